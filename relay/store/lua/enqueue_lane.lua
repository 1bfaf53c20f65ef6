--[[
  Put one event (back) on a lane with a FRESH retry schedule: redeliver and ping. The delivery's
  attempt count for the schedule goes back to 0 (the attempt log, a separate list, keeps every
  earlier attempt), so it gets the whole retry schedule again and Retry-After is read on its
  first failure. A dead letter of this event for this subscription leaves the dead index in the
  same step, so a later recover cannot send it a second time.
  KEYS: lane, dlv, due_deliver, pairs, dead_index
  ARGV: event_id, now, pair, run_id
  Returns 1.
]]
--- @include "lifecycle"
--- @include "requeue"

redis.call('ZREM', KEYS[5], ARGV[1] .. '|' .. ARGV[4])
requeue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
