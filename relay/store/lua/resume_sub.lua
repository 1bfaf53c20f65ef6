--[[
  One batch of a (re-)enabled subscription's resume (the `chores` pump, workers/chores.py): up to
  `batch` of its lanes (SSCAN of its pairs set from the chore's cursor) scheduled now, NX (a lane
  already scheduled or held keeps its time and lease). Bounded by `batch`; a crash between
  batches only repeats a batch, which NX makes harmless. A subscription disabled or deleted
  meanwhile stops the resume.

  KEYS: sub, pairs, due_deliver, due_chores, chore leases, cursors
  ARGV: sub_id, batch, chore member, token
  Returns 1 when more is left, 0 when done, -1 when the lease was lost.
]]
--- @include "lease"

if not lease_held(KEYS[5], ARGV[3], ARGV[4]) then return -1 end
if redis.call('HGET', KEYS[1], 'enabled') ~= '1' then
  redis.call('HDEL', KEYS[6], ARGV[3])
  release(KEYS[4], KEYS[5], ARGV[3], nil)
  return 0
end
local cursor = redis.call('HGET', KEYS[6], ARGV[3]) or '0'
local scan = redis.call('SSCAN', KEYS[2], cursor, 'COUNT', tonumber(ARGV[2]))
local now = server_now()
for _, run_id in ipairs(scan[2]) do
  redis.call('ZADD', KEYS[3], 'NX', now, ARGV[1] .. '|' .. run_id)
end
if #scan[2] > 0 then nudge(KEYS[3]) end
if scan[1] ~= '0' then
  redis.call('HSET', KEYS[6], ARGV[3], scan[1])
  release(KEYS[4], KEYS[5], ARGV[3], now)
  return 1
end
redis.call('HDEL', KEYS[6], ARGV[3])
release(KEYS[4], KEYS[5], ARGV[3], nil)
return 0
