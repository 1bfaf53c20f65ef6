--[[
  Park a lane of a disabled subscription, unless it was re-enabled meanwhile.
  KEYS: sub, due_deliver, leases. ARGV: pair, token
  Returns 1 (parked), 0 (re-enabled meanwhile: due again now, or the lease was lost).
]]
--- @include "lease"

if not lease_held(KEYS[3], ARGV[1], ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[1], 'enabled') ~= '1' then
  release(KEYS[2], KEYS[3], ARGV[1], nil)
  return 1
end
release(KEYS[2], KEYS[3], ARGV[1], server_now())
return 0
