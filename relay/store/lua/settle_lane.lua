--[[
  Drop a lane from the schedule if it is empty (no lost wake-up: the check and the removal are one
  step, and RECORD_EVENT adds with NX). KEYS: lane, due_deliver, pairs, leases.
  ARGV: pair, run_id, token
  Returns 1 (dropped), 0 (it has events: due again now, or the lease was lost).
]]
--- @include "lease"

if not lease_held(KEYS[4], ARGV[1], ARGV[3]) then return 0 end
if redis.call('LLEN', KEYS[1]) == 0 then
  release(KEYS[2], KEYS[4], ARGV[1], nil)
  redis.call('SREM', KEYS[3], ARGV[2])
  return 1
end
release(KEYS[2], KEYS[4], ARGV[1], server_now())
return 0
