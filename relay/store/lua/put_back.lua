--[[
  Put back a member set aside after repeated failures (lua/fail.lua): out of the poison set, its
  failure count cleared, the error taken off its record, due now (NX: a member scheduled again
  meanwhile keeps its time and its lease). Refresh of a run's start or of a watch, and
  `relay jobs retry` (relay/ops/jobs.py), for every due set.
  KEYS: due, poison, leases, record ('' none: the run or watch that carries `job_error`)
  ARGV: member
  Returns 1 (put back) or 0 (it was not set aside: nothing written).
]]
--- @include "lease"

if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', key_lease_fails(KEYS[3]), ARGV[1])
if KEYS[4] ~= '' then redis.call('HDEL', KEYS[4], 'job_error') end
redis.call('ZADD', KEYS[1], 'NX', server_now(), ARGV[1])
nudge(KEYS[1])
return 1
