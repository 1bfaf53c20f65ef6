--[[
  The end of one listing of a watched agent (workers/watch.py), only if the watch still exists:
  a DELETE during the listing must not be written back over. Marks the new upstream runs seen,
  records the listing and schedules the next one (XX: a deleted watch is not re-added).
  KEYS: watch, watch_seen, due_watch, leases
  ARGV: watch_id, now, runs_seen, interval, token, upstream run ids...
  Returns 1 (recorded; the next listing is due `interval` seconds from now, server time) or 0 (the
  watch is gone, or the lease is another worker's now: nothing written).
]]
--- @include "lease"

if not lease_held(KEYS[4], ARGV[1], ARGV[5]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  release(KEYS[3], KEYS[4], ARGV[1], nil)
  return 0
end
for i = 6, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[1], 'baselined', '1', 'last_listed_at', ARGV[2], 'last_error', '',
  'runs_seen', ARGV[3])
release(KEYS[3], KEYS[4], ARGV[1], server_now() + tonumber(ARGV[4]))
return 1
