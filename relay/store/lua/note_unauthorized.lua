--[[
  A vendor 401/403 for one run: start or continue its streak (the first 401's time is kept until a
  success clears it) and tell the tenant, once per gate period: a notice, and the operational
  event `vendor.unauthorized` to the subscriptions that asked for it (includes/notice.lua). The
  time is Redis's, so every worker measures the window on one clock. A run deleted meanwhile is
  not written back.
  KEYS: run, gate, notices. ARGV: field prefix ('' polls, 'start_' starts), gate_ttl, notice, keep,
  then the event's: tenant, type, about, event_id, body, now, event ttl, lane run
  Returns {since, now, count} or false when the run is gone.
]]
--- @include "notice"

if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
redis.call('HSETNX', KEYS[1], ARGV[1] .. 'unauthorized_since', now)
local since = redis.call('HGET', KEYS[1], ARGV[1] .. 'unauthorized_since')
if since == '' then
  since = now
  redis.call('HSET', KEYS[1], ARGV[1] .. 'unauthorized_since', now)
end
local count = redis.call('HINCRBY', KEYS[1], ARGV[1] .. 'unauthorized', 1)
keep_and_tell(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
  ARGV[9], ARGV[10], ARGV[11], ARGV[12])
return {since, now, count}
