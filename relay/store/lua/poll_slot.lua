--[[
  A poll's way to the vendor, in one step: the lease check and the run's existence (as
  lua/bump.lua), the credential's send slot (includes/slot.lua, as lua/reserve_slot.lua), and,
  when the slot is taken, the poll counted on the run and the request in the tenant's usage. One
  round trip where there were three (reserve, bump, the usage count: bench/polling.py). A poll
  whose lease is gone takes no slot. The request is counted when its slot is taken, just before
  it is sent: a worker that dies in between counts one request it never sent (before, one that
  died after the send and before the count missed one).
  KEYS: leases, run, due, line (the next free slot), the tenant's reservations on the line, the
  line's counts, usage (the tenant's counters of the day, relay/tenancy/usage.py; '' for none).
  ARGV: member, token, field (counted on the run), interval, max_wait, tenant, reservations
  prefix, usage ttl (s).
  Returns false (the lease was lost, or the run is gone: released then, as bump.lua does), or the
  slot's answer in seconds: >= 0 taken (counted; sleep that long, then send), < 0 come back after
  -value (the slot reserved under the member, nothing counted).
  Ends: the slot keys as reserve_slot.lua says; the usage hash expires its ttl after its last
  count (usage.py); the run's field goes with the run.
]]
--- @include "slot"

if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[2] ~= '' then release(KEYS[3], KEYS[1], ARGV[1], nil) end
  return false
end
local wait = slot_reserve(KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[4]), tonumber(ARGV[5]),
  ARGV[1], ARGV[6], ARGV[7])
if wait >= 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if KEYS[7] ~= '' then
    redis.call('HINCRBY', KEYS[7], 'vendor_requests', 1)
    redis.call('EXPIRE', KEYS[7], tonumber(ARGV[8]))
  end
end
return tostring(wait)
