--[[
  Track a run that gave up again (refresh on a `tracking_failed` run): back to `tracking`, the
  error and every failure streak cleared, the tracking window restarted now, polled at once.
  KEYS: run, due_poll. ARGV: run_id, now. Returns 1 if resumed, 0 if it was not tracking_failed.
]]
--- @include "lifecycle"
--- @include "nudge"

if redis.call('HGET', KEYS[1], 'state') ~= 'tracking_failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'tracking', 'error', '', 'terminal', '0',
  'tracking_since', ARGV[2], 'updated_at', ARGV[2], 'errors', '0', 'not_found', '0',
  'unauthorized', '0', 'unauthorized_since', '', 'poll_interval', '0')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
nudge(KEYS[2])
-- lifecycle (includes/lifecycle.lua): tracked again, so no longer ended: the listing indexes
-- follow the state, and a retention clock already started stops.
lc_index(ARGV[1])
lc_reopen(ARGV[1])
return 1
