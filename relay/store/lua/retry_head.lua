--[[
  Retry the head `delay` seconds from now (server time); the subscription's first waiting lane
  is woken (includes/wake.lua). With `park` (a 410 just disabled the subscription), the lane is
  parked instead, in the same step and under the same lease: taken off the schedule while the
  subscription is disabled, due now if it was enabled again meanwhile (so no later step runs
  without the lease and touches a lease another worker holds by then). The run (named by the
  pair) counts the delivery as retrying and is listed as `failing` (includes/delivery_state.lua).
  KEYS: lane, dlv, due_deliver, leases, waiting, sub ('' unless park)
  ARGV: event_id, now, pair, attempts, code, error, next_at (shown), delay, token, park ('1')
  Returns 1, or 0 when the lease was lost or the head is another event.
]]
--- @include "lease"
--- @include "wake"
--- @include "delivery_state"

if not lease_held(KEYS[4], ARGV[3], ARGV[9]) then return 0 end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
ds_set(KEYS[2], string.match(ARGV[3], '^[^|]*|(.*)$') or '', 'retrying')
redis.call('HSET', KEYS[2], 'state', 'retrying', 'attempts', ARGV[4], 'last_code', ARGV[5],
  'last_error', ARGV[6], 'updated_at', ARGV[2], 'next_at', ARGV[7])
local now = server_now()
if ARGV[10] == '1' and redis.call('HGET', KEYS[6], 'enabled') ~= '1' then
  release(KEYS[3], KEYS[4], ARGV[3], nil)
else
  release(KEYS[3], KEYS[4], ARGV[3], now + tonumber(ARGV[8]))
end
redis.call('ZREM', KEYS[5], ARGV[3])
wake_one(KEYS[3], KEYS[4], KEYS[5], now)
return 1
