--[[
  A tenant's reservations on one line of send slots deleted together with its count on that
  line (erase-tenant), so no count outlives its set (see lua/reserve_slot.lua).
  KEYS: the tenant's reservations on the line, the line's counts. ARGV: tenant
  Returns the number of reservations dropped.
]]

local n = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
