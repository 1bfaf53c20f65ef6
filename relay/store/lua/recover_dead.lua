--[[
  Recover ONE dead letter, as one step: only if it is still in the dead index (so two recovers
  at once queue it once, and one that died again meanwhile is taken from the index it is in),
  take it out of the index, reset the delivery to pending with a fresh retry schedule (attempts
  0; the attempt log keeps the history), append it to its lane and schedule the lane.
  KEYS: dead_index, lane, dlv, due_deliver, pairs
  ARGV: member ('<event_id>|<run_id>'), event_id, now, pair, run_id
  Returns 1 (queued again) or 0 (no longer dead-lettered: someone else recovered it).
]]
--- @include "lifecycle"
--- @include "requeue"

if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
requeue(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
