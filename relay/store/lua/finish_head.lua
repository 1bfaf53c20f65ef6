--[[
  Finish the head of a lane: succeeded or dead-lettered. Only pops if the head is still this
  event and the lease still this claim's, so a late finisher whose lease was taken over cannot
  pop someone else's event. The lane is due again at once if it has more, else leaves the
  schedule. The subscription's first waiting lane is woken (includes/wake.lua). The run's counts
  of dead and retrying deliveries, and its place in the `delivery` listing indexes, follow the
  delivery's new state (includes/delivery_state.lua: a dead letter lists the run as `dead`).
  KEYS: lane, dlv, due_deliver, pairs, dead_index, leases, waiting
  ARGV: event_id, now, pair, run_id, state, attempts, code, error, dead ('1'/'0'), token
  Returns 1, or 0 when the lease was lost or the head is another event.
]]
--- @include "lifecycle"
--- @include "lease"
--- @include "wake"
--- @include "delivery_state"

if not lease_held(KEYS[6], ARGV[3], ARGV[10]) then return 0 end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
ds_set(KEYS[2], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[2], 'state', ARGV[5], 'attempts', ARGV[6], 'last_code', ARGV[7],
  'last_error', ARGV[8], 'updated_at', ARGV[2], 'next_at', '')
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1] .. '|' .. ARGV[4])
end
if redis.call('LLEN', KEYS[1]) > 0 then
  release(KEYS[3], KEYS[6], ARGV[3], server_now())
else
  release(KEYS[3], KEYS[6], ARGV[3], nil)
  redis.call('SREM', KEYS[4], ARGV[4])
end
redis.call('ZREM', KEYS[7], ARGV[3])
wake_one(KEYS[3], KEYS[6], KEYS[7], server_now())
-- lifecycle (includes/lifecycle.lua): one delivery fewer waits; the last one of an ended run
-- starts its retention.
lc_queued(ARGV[4], -1)
lc_settle(ARGV[4])
return 1
