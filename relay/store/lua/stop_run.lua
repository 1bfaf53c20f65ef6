--[[
  DELETE /v1/runs/{id}: stop tracking, decided from the run as it stands now (a read before this
  script could be stale: a run that completed since stays completed, a run resumed since is
  stopped, not left tracking with nothing scheduled). An active run (starting, tracking) becomes
  `stopped`; whatever its state, it leaves the start and poll schedules with its lease entries,
  failure counts and set-aside entries (a worker still holding it finds its lease gone and
  writes nothing), leaves the active-run quota, and its retention starts if its deliveries
  settled.
  KEYS: run, due_start, start_leases, start_poison, due_poll, poll_leases, poll_poison
  ARGV: run_id, now
  Returns 1, or 0 (no such run: nothing written).
]]
--- @include "lifecycle"
--- @include "lease"

local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
if state == 'starting' or state == 'tracking' then
  redis.call('HSET', KEYS[1], 'state', 'stopped', 'updated_at', ARGV[2])
end
for i = 2, 5, 3 do
  redis.call('ZREM', KEYS[i], ARGV[1])
  redis.call('HDEL', KEYS[i + 1], ARGV[1])
  redis.call('HDEL', key_lease_fails(KEYS[i + 1]), ARGV[1])
  redis.call('ZREM', KEYS[i + 2], ARGV[1])
end
-- lifecycle (includes/lifecycle.lua): the listing indexes and the quota follow the state; an
-- ended run with nothing pending starts retention.
lc_index(ARGV[1])
lc_settle(ARGV[1])
return 1
