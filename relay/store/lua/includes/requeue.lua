--[[
  An event back at the end of its lane with a FRESH retry schedule (ENQUEUE_LANE, RECOVER_DEAD):
  the delivery is pending with 0 attempts (the attempt log, a separate list, keeps every earlier
  attempt), the lane is listed and scheduled (NX: one already scheduled or held keeps its time
  and lease), and an ended run's keys outlive this delivery (lifecycle `lc_reopen`). A dead or
  retrying delivery counts so no more: the run leaves the `delivery` listing indexes with its
  last one (includes/delivery_state.lua).
]]
--- @include "nudge"
--- @include "delivery_state"

local function requeue(lane, dlv, due, pairs, event_id, now, pair, run_id)
  redis.call('RPUSH', lane, event_id)
  ds_set(dlv, run_id, 'pending')
  redis.call('HSET', dlv, 'state', 'pending', 'attempts', 0, 'next_at', '', 'updated_at', now)
  redis.call('SADD', pairs, run_id)
  redis.call('ZADD', due, 'NX', now, pair)
  nudge(due)
  lc_queued(run_id, 1)
  lc_reopen(run_id)
end
