--[[
  A delivery ended in the worker while a lane was being put to wait: wake the subscription's
  first waiting lane (includes/wake.lua).

  KEYS: due_deliver, leases, waiting
  ARGV: none
  Returns 1.
]]
--- @include "lease"
--- @include "wake"

wake_one(KEYS[1], KEYS[2], KEYS[3], server_now())
return 1
