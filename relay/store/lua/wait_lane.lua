--[[
  A lane whose worker is at its cap for the subscription waits (includes/wake.lua). KEYS: due_deliver,
  leases, waiting. ARGV: lane member, token, safety-net delay (s).
  Returns 1 (waiting), 0 (the lease was lost).
]]
--- @include "lease"
--- @include "wake"

if not lease_held(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
local now = server_now()
release(KEYS[1], KEYS[2], ARGV[1], now + tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], 'NX', now, ARGV[1])
redis.call('EXPIRE', KEYS[3], 86400)
return 1
