--[[
  Remove a subscription with everything queued for it: its lanes (parked ones included), the
  delivery records of the events still on them and of its dead letters, its schedule entries.
  The attempt log is left to expire.
  KEYS: sub, pairs, due_deliver, dead, attempts, tenant_subs, waiting lanes (includes/wake.lua)
  ARGV: sub_id, attempts_ttl
  Returns 1.
]]
--- @include "lifecycle"

local sub = ARGV[1]
-- lifecycle (includes/lifecycle.lua): the runs with lanes here, settled below.
local lc_runs = redis.call('SMEMBERS', KEYS[2])
for _, run_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local lane = key_lane(sub, run_id)
  for _, evt in ipairs(redis.call('LRANGE', lane, 0, -1)) do
    redis.call('DEL', key_delivery(evt, sub))
  end
  redis.call('DEL', lane)
  redis.call('ZREM', KEYS[3], sub .. '|' .. run_id)
  redis.call('HDEL', key_leases(KEYS[3]), sub .. '|' .. run_id)
  redis.call('HDEL', key_lease_fails(key_leases(KEYS[3])), sub .. '|' .. run_id)
end
for _, item in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local evt = string.match(item, '^([^|]*)')
  redis.call('DEL', key_delivery(evt, sub))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[7])
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[2]))
redis.call('SREM', KEYS[6], sub)
-- lifecycle (includes/lifecycle.lua): runs that waited only for this subscription's
-- deliveries (now moot) start retention.
for _, run_id in ipairs(lc_runs) do lc_settle(run_id) end
return 1
