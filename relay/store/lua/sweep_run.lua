--[[
  The sweep of one run whose retention passed: everything that cannot expire by itself (its
  listing index entries, its schedule and lease entries, its subscriptions' old dead letters and
  attempts,
  the tenant's old notices, its watch's seen-set member, its upstream key).

  KEYS: none (every key is built by the generated key_* functions from relay/store/keys.py)
  ARGV[1] run_id
  ARGV[2] (unused)
  ARGV[3] tombstone ttl (ms)
  The time is Redis's.
  Returns 1 (swept) or 0 (not due, or reopened).
]]
--- @include "lifecycle"
--- @include "trim_old"
--- @include "unlease"

local now = lc_now_ms() / 1000
local score = redis.call('ZSCORE', KEY_RETENTION, ARGV[1])
if not score or tonumber(score) > now then return 0 end
redis.call('ZREM', KEY_RETENTION, ARGV[1])
local rk = key_run(ARGV[1])
local r = redis.call('HMGET', rk, 'tenant', 'provider', 'agent_id', 'upstream_run_id',
  'watch_id', 'subs_seen', 'retention', 'ix_status', 'ix_state')
for _, k in ipairs(lc_keys(ARGV[1])) do redis.call('DEL', k) end
redis.call('DEL', rk)
redis.call('ZREM', KEY_DUE_POLL, ARGV[1])
redis.call('ZREM', KEY_DUE_START, ARGV[1])
ul_forget(KEY_DUE_POLL, ARGV[1])
ul_forget(KEY_DUE_START, ARGV[1])
if not r[1] then return 1 end
local tenant = r[1]
lc_unindex(ARGV[1], tenant, r[2], r[8], r[9])
local cutoff = now - tonumber(r[7] or '${DEFAULT_RETENTION}')
for sub in string.gmatch(r[6] or '', '[^,]+') do
  ul_forget(KEY_DUE_DELIVER, sub .. '|' .. ARGV[1])
  -- Dead letters and attempts older than the retention: this run's are among them.
  redis.call('ZREMRANGEBYSCORE', key_sub_dead(sub), '-inf', '(' .. cutoff)
  lc_trim_old(key_sub_attempts(sub), cutoff)
end
lc_trim_old(key_tenant_notices(tenant), cutoff)
if r[4] and r[4] ~= '' then
  lc_bury(ARGV[1], tenant, r[2], r[3], r[4], ARGV[3])
  if r[5] and r[5] ~= '' then redis.call('SREM', key_watch_seen(r[5]), r[4]) end
end
return 1
