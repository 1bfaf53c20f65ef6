--[[
  A subscription created within the tenant's RELAY_MAX_SUBSCRIPTIONS, checked and taken in one
  step so concurrent creates cannot overshoot (the tenant's subscription set is the count).
  KEYS: tenant_subs, sub. ARGV: limit, sub_id, field, value, ... Returns 1 (added) or 0 (full).
]]

if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('SADD', KEYS[1], ARGV[2])
return 1
