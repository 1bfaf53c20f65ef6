--[[
  Erase one run now: every key and index entry, its lanes, dead letters and lease entries
  included; the upstream key becomes a tombstone so a watch does not track it again.
  KEYS: none (key_* functions). ARGV: run_id, tombstone ttl (ms).
  Returns 1 (erased) or 0 (no such run).
]]
--- @include "lifecycle"
--- @include "unlease"

local rk = key_run(ARGV[1])
local r = redis.call('HMGET', rk, 'tenant', 'provider', 'agent_id', 'upstream_run_id',
  'watch_id', 'ix_status', 'ix_state')
if not r[1] then return 0 end
local tenant = r[1]
for _, e in ipairs(redis.call('LRANGE', key_run_events(ARGV[1]), 0, -1)) do
  local subs = redis.call('HGET', key_event(e), 'subs') or ''
  for sub in string.gmatch(subs, '[^,]+') do
    redis.call('ZREM', key_sub_dead(sub), e .. '|' .. ARGV[1])
    redis.call('DEL', key_lane(sub, ARGV[1]))
    redis.call('ZREM', KEY_DUE_DELIVER, sub .. '|' .. ARGV[1])
    ul_forget(KEY_DUE_DELIVER, sub .. '|' .. ARGV[1])
    redis.call('SREM', key_sub_pairs(sub), ARGV[1])
  end
end
-- The attempt-log entries about the run (bounded by RELAY_ATTEMPT_RETENTION per subscription).
local mark = '"run_id":"' .. ARGV[1] .. '"'
for sub in string.gmatch(lc_subs(ARGV[1]), '[^,]+') do
  local log = key_sub_attempts(sub)
  for _, row in ipairs(redis.call('LRANGE', log, 0, -1)) do
    if string.find(row, mark, 1, true) then redis.call('LREM', log, 0, row) end
  end
end
for _, k in ipairs(lc_keys(ARGV[1])) do redis.call('DEL', k) end
redis.call('DEL', rk)
redis.call('ZREM', KEY_RETENTION, ARGV[1])
redis.call('ZREM', KEY_DUE_POLL, ARGV[1])
redis.call('ZREM', KEY_DUE_START, ARGV[1])
ul_forget(KEY_DUE_POLL, ARGV[1])
ul_forget(KEY_DUE_START, ARGV[1])
lc_unindex(ARGV[1], tenant, r[2], r[6], r[7])
if r[4] and r[4] ~= '' then lc_bury(ARGV[1], tenant, r[2], r[3], r[4], ARGV[2]) end
return 1
