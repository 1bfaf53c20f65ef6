--[[
  A held member's job raised. Count it; after `limit` consecutive failures the member is set
  aside in the poison set (out of the schedule, not retried every lease forever) with the error
  on its run, until a refresh puts it back. Below the limit the member keeps its lease and comes
  back when the lease passes. The poison set is trimmed to `keep` seconds (RELAY_RETENTION).
  KEYS: due, leases, poison, run ('' for none). ARGV: member, token, limit, error, keep
  Returns the failure count, or 0 when the lease was lost.
]]
--- @include "lease"

if not lease_held(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
local fails = redis.call('HINCRBY', key_lease_fails(KEYS[2]), ARGV[1], 1)
if fails < tonumber(ARGV[3]) then return fails end
local now = server_now()
release(KEYS[1], KEYS[2], ARGV[1], nil)
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[5]))
if KEYS[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], 'job_error', ARGV[4])
end
return fails
