--[[
  Claim due members by pushing their score to a lease deadline; an unfinished claim (its worker
  died) becomes due again when the lease passes. The claim time is the job's observation time
  (see RECORD_EVENT). When nothing is due, the time the next member is due (a lease deadline
  included) tells the pump how long it may sleep (includes/nudge.lua); when the batch was full,
  another idle worker is nudged, as more may be due.

  KEYS: due, leases
  ARGV: lease seconds, limit
  Returns {server_now, next due ('' unless nothing was claimed; '' too when the set is empty),
  member, token, fails, ...}.
]]
--- @include "lease"

local now = server_now()
local limit = tonumber(ARGV[2])
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local out = {string.format('%.6f', now), ''}
if #items == 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then out[2] = first[2] end
  return out
end
local deadline = now + tonumber(ARGV[1])
for _, m in ipairs(items) do
  redis.call('ZADD', KEYS[1], deadline, m)
  local token = redis.call('ZSCORE', KEYS[1], m)
  redis.call('HSET', KEYS[2], m, token)
  out[#out + 1] = m
  out[#out + 1] = token
  out[#out + 1] = redis.call('HGET', key_lease_fails(KEYS[2]), m) or '0'
end
if #items == limit then nudge(KEYS[1]) end
return out
