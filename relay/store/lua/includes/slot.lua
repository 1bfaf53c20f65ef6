--[[
  One send slot taken or reserved on a line of slots (GCRA): the whole of what
  lua/reserve_slot.lua does and says (why reservations, why per tenant, where each key ends),
  shared with lua/held_slots.lua, which takes a claim's slots in the same script as their lease
  checks and their counts.
  slot_reserve(line, held_key, counts_key, interval, max_wait, holder, tenant, prefix): line the
  next free slot, held_key the caller's tenant's reservations (zset holder -> slot), counts_key
  the counts (zset tenant -> reservations held), prefix the prefix of every tenant's reservations
  key. Returns seconds (a number): >= 0 the slot is taken (sleep that long, then send), < 0 come
  back after -value.
]]
--- @include "lease"

local function slot_reserve(line, held_key, counts_key, interval, max_wait, holder, tenant, prefix)
  local now = server_now()
  -- The count of tenant t is the size of its set `key`, written whenever the set changes.
  local function count(t, key)
    local n = redis.call('ZCARD', key)
    if n == 0 then redis.call('ZREM', counts_key, t) else redis.call('ZADD', counts_key, n, t) end
    return n
  end
  local held = redis.call('ZSCORE', held_key, holder)
  if held then
    held = tonumber(held)
    if held - now > max_wait then return now - held end
    redis.call('ZREM', held_key, holder)
    count(tenant, held_key)
    if held >= now - max_wait then return math.max(held - now, 0) end
  end
  redis.call('ZREMRANGEBYSCORE', held_key, '-inf', now - max_wait)
  count(tenant, held_key)
  local slot = math.max(tonumber(redis.call('GET', line) or '0'), now)
  local wait = slot - now
  local nxt = slot + interval
  redis.call('SET', line, string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
  if wait <= max_wait then return wait end
  local ttl = math.ceil(wait * 1000) + 60000
  local mine = redis.call('ZCARD', held_key)
  -- The tenant holding the most, its count checked against its set (lapsed entries trimmed): a
  -- count that was off (its set expired or was erased) is corrected and the next one looked at, a
  -- few at most per call (each correction is for good).
  local top, other
  for _ = 1, 4 do
    top = redis.call('ZREVRANGE', counts_key, 0, 0, 'WITHSCORES')
    if not top[1] or top[1] == tenant then break end
    other = prefix .. top[1]
    redis.call('ZREMRANGEBYSCORE', other, '-inf', now - max_wait)
    if count(top[1], other) == tonumber(top[2]) then break end
    top = {}
  end
  if top[1] and top[1] ~= tenant and tonumber(top[2]) > mine + 1 then
    local first = redis.call('ZRANGEBYSCORE', other, '(' .. (now + max_wait), '+inf',
      'WITHSCORES', 'LIMIT', 0, 1)
    if first[1] then
      redis.call('ZADD', other, slot, first[1])
      redis.call('PEXPIRE', other, ttl)
      slot = tonumber(first[2])
      wait = slot - now
    end
  end
  redis.call('ZADD', held_key, slot, holder)
  redis.call('PEXPIRE', held_key, ttl)
  count(tenant, held_key)
  redis.call('PEXPIRE', counts_key, ttl)
  return -wait
end
