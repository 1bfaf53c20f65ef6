--[[
  The way to the vendor of the jobs a pump claimed together (polls, starts), in one step: for
  each, the lease check and the run's existence (as lua/bump.lua), the credential's send slot
  (includes/slot.lua, as lua/reserve_slot.lua), and, when the slot is taken, the request counted
  on the run (a poll's `polls`; a start counts none) and in the tenant's usage. One script for
  the whole claim where there was one per job: a poll's own script call and the wait on its
  answer were ~a sixth of a polling worker's CPU (bench/polling.py; the issue 27 note has the
  figures). Each job's outcome is exactly what its own call gave: the runs are taken in the
  order given, each slot after the one before. A job whose lease is gone takes no slot. The
  request is counted when its slot is taken, just before it is sent: a worker that dies in
  between counts one request it never sent.
  A job run by hand, or one the claim did not prepare, calls it alone.
  KEYS: leases, due, then for each job five: its run, its line (the next free slot), its tenant's
  reservations on the line, the line's counts, usage (the tenant's counters of the day,
  relay/tenancy/usage.py; '' for none).
  ARGV: field (counted on the run; '' for none), interval, max_wait, then for each job five:
  member, token, tenant, reservations prefix, usage ttl (s).
  Bounded: one pass over the jobs given, at most a claim's batch (workers/pump.py `batch`, 100),
  each the constant work of one slot (includes/slot.lua looks at a few entries at most).
  Returns one answer a job: '' (the lease was lost, or the run is gone: released then, as
  bump.lua does), or the slot's answer in seconds: >= 0 taken (counted; sleep that long, then
  send), < 0 come back after -value (the slot reserved under the member, nothing counted).
  Ends: the slot keys as reserve_slot.lua says; the usage hash expires its ttl after its last
  count (usage.py); the run's field goes with the run.
]]
--- @include "slot"

local leases, due = KEYS[1], KEYS[2]
local field, interval, max_wait = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local answers = {}
for i = 0, (#KEYS - 2) / 5 - 1 do
  local k, a = 2 + i * 5, 3 + i * 5
  local run, line, held, counts, usage = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local member, token, tenant, prefix = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local ttl = tonumber(ARGV[a + 5])
  local answer = ''
  if lease_held(leases, member, token) then
    if redis.call('EXISTS', run) == 0 then
      if token ~= '' then release(due, leases, member, nil) end
    else
      local wait = slot_reserve(line, held, counts, interval, max_wait, member, tenant, prefix)
      if wait >= 0 then
        if field ~= '' then redis.call('HINCRBY', run, field, 1) end
        if usage ~= '' then
          redis.call('HINCRBY', usage, 'vendor_requests', 1)
          redis.call('EXPIRE', usage, ttl)
        end
      end
      answer = tostring(wait)
    end
  end
  answers[#answers + 1] = answer
end
return answers
