--[[
  Keep a notice for a tenant at most once per gate period, and, in the same step and only if it
  was kept, queue the operational event that tells it to the tenant's subscriptions that asked
  for its type (includes/notice.lua).

  KEYS: gate, notices (the subscriptions, their lanes and the event are built by key_* functions)
  ARGV: gate_ttl, notice, keep, tenant, type, about (subscription not to tell, '' none),
        event_id, body, now, event ttl, lane run ('ping': the run-less lane)
  Returns 1 if the notice was kept (and its event queued), else 0.
]]
--- @include "notice"

if keep_and_tell(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
    ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]) then
  return 1
end
return 0
