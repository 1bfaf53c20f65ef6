--[[
  `relay reencrypt` (relay/ops/reencrypt.py): swap one sealed value for its re-sealed form only if
  it is still the value that was read, so a concurrent write is never overwritten.
  KEYS: key. ARGV: field ('' for a string key), old value, new value. Returns 1 swapped, 0 not.
]]

if ARGV[1] == '' then
  if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  return 1
end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
