--[[
  Count one more of something on a held member's record (a poll made, a vendor error in a row),
  only while the lease is still this claim's and the record exists: a job whose run was stopped or
  deleted meanwhile (DELETE drops the lease entry) writes nothing.
  A held member whose record is gone (erased while its job ran) is released here, its lease entry
  with it: the job stops, and nothing is left behind.
  KEYS: leases, record, due. ARGV: member, token, field.
  Returns the new count, or false (lease lost, or the record gone).
]]
--- @include "lease"

if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[2] ~= '' then release(KEYS[3], KEYS[1], ARGV[1], nil) end
  return false
end
return redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
