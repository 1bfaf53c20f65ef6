--[[
  POST /v1/runs/{id}/refresh: poll now, but never start a second poll of a run already being
  polled: a held run is marked `poll_again` (its poll reschedules itself at once when it ends);
  a run set aside as poison is put back. KEYS: run, due_poll, leases, poison. ARGV: run_id
  Returns 'not_tracking', 'queued' (held: after the current poll) or 'scheduled'.
]]
--- @include "lease"

if redis.call('HGET', KEYS[1], 'state') ~= 'tracking' then return 'not_tracking' end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'poll_again', '1')
  return 'queued'
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', key_lease_fails(KEYS[3]), ARGV[1])
redis.call('HDEL', KEYS[1], 'job_error')
redis.call('ZADD', KEYS[2], server_now(), ARGV[1])
nudge(KEYS[2])
return 'scheduled'
