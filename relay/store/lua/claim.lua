--[[
  Claim due members by pushing their score to a lease deadline; an unfinished claim (its worker
  died) becomes due again when the lease passes. Returns {server_now, member, token, fails, ...}:
  the claim time is the job's observation time (see RECORD_EVENT).
  KEYS: due, leases. ARGV: lease seconds, limit.
]]
--- @include "lease"

local now = server_now()
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {string.format('%.6f', now)}
local deadline = now + tonumber(ARGV[1])
for _, m in ipairs(items) do
  redis.call('ZADD', KEYS[1], deadline, m)
  local token = redis.call('ZSCORE', KEYS[1], m)
  redis.call('HSET', KEYS[2], m, token)
  out[#out + 1] = m
  out[#out + 1] = token
  out[#out + 1] = redis.call('HGET', key_lease_fails(KEYS[2]), m) or '0'
end
return out
