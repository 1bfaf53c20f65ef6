--[[
  Finish the head of a lane: dead-lettered, or dropped (its event is gone). The run's counts of
  dead and retrying deliveries, and its place in the `delivery` listing indexes, follow the
  delivery's new state (includes/delivery_state.lua: a dead letter lists the run as `dead`).
  A delivery the receiver took ends in delivered.lua instead, with its attempt log and usage.
  KEYS: lane, dlv, due_deliver, pairs, dead_index, leases, waiting
  ARGV: event_id, now, pair, run_id, state, attempts, code, error, dead ('1'/'0'), token
  Returns 1, or 0 when the lease was lost or the head is another event (includes/finish.lua).
]]
--- @include "finish"

if not pop_head(KEYS[1], KEYS[2], KEYS[5], KEYS[6], ARGV[3], ARGV[10], ARGV[1], ARGV[2],
    ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]) then
  return 0
end
let_go(KEYS[1], KEYS[3], KEYS[4], KEYS[6], KEYS[7], ARGV[3], ARGV[4])
return 1
