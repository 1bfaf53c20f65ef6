--[[
  Learn one phase length of a vendor status: an exponentially weighted mean and mean deviation
  (as TCP estimates a round trip), so the poll job can aim its next poll just after a run's
  expected transition (relay/vendors/polling.py). Atomic, because every worker feeds the same
  figures. Bounded: a status not yet known is learned only while fewer than `max_statuses` are
  (a vendor inventing statuses cannot grow the hash), and the key expires `ttl` seconds after the
  last phase learned, so a vendor no longer used leaves nothing behind.
  KEYS: the vendor's phase hash (keys.phases). ARGV: status, seconds, weight (0..1), ttl (s),
  max_statuses.
  Returns 1 if learned, 0 if refused (hash full).
]]
local mean_f, dev_f = 'm:' .. ARGV[1], 'd:' .. ARGV[1]
local seconds, weight = tonumber(ARGV[2]), tonumber(ARGV[3])
local known = redis.call('HMGET', KEYS[1], mean_f, dev_f)
local mean, dev = tonumber(known[1]), tonumber(known[2])
if mean == nil then
  if redis.call('HLEN', KEYS[1]) >= 2 * tonumber(ARGV[5]) then return 0 end
  mean, dev = seconds, seconds / 4
else
  dev = dev + weight * (math.abs(seconds - mean) - dev)
  mean = mean + weight * (seconds - mean)
end
redis.call('HSET', KEYS[1], mean_f, tostring(mean), dev_f, tostring(dev))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
