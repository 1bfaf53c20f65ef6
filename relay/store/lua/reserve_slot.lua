--[[
  Send slots (GCRA), for the vendor budget per credential (relay/budget.py) and a subscription's
  rate_limit (relay/rate_limit.py): slots `interval` apart from the key's next free one, on the
  server's clock (a worker's skewed clock neither starves the others nor overspends). A caller
  whose slot is within max_wait takes it and sleeps until it. A caller further back *reserves*
  its slot under its holder name (a run, a lane, a watch) and is told to come back then: it keeps
  its place in line. Without reservations every deferred caller came back at the same free slot,
  one took it and the rest were claimed and put back again, every turn, and that churn in the
  shared pumps is what delayed other tenants (bench/fairness.py). A reservation missed by more
  than max_wait (its worker stalled) lapses and its holder queues again, so no burst after a
  stall is larger than max_wait's worth of slots.
  Tenants sharing one credential (the operator's account): reservations are kept per tenant, with
  a count per tenant, and a caller that must wait while another tenant holds more reservations
  than it does takes that tenant's first reservation past max_wait, whose holder gets the new slot
  at the end instead (it finds out when it comes back early, and waits on). So a tenant with a
  few runs is not queued behind another's thousands; the slots themselves, and so the budget, are
  the same: each call spends one, a swap only changes who has which.
  KEYS (named by relay/slots.py, the one caller): next free slot, the caller's tenant's
  reservations (zset holder -> slot), the counts (zset tenant -> reservations held).
  ARGV: interval (s), max_wait (s), holder, tenant, the prefix of every tenant's reservations
  key (the prefix followed by a tenant name is its key).
  Returns seconds: >= 0 the slot is taken (sleep that long, then send), < 0 come back after
  -value. Ends: the free-slot key expires a second after its slot; a reservation leaves when its
  holder takes it or lapses (trimmed here), and both zsets expire a minute after the last slot
  they hold. A count is never added to or taken from: every time the script touches a tenant's
  set it writes the set's size as the count (its ZCARD: gone with the set), and the tenant at the
  top is checked against its set before it is used, so a count outlives neither a set that
  expired nor one erase-tenant deleted (relay/store/slots.py `drop`, one script with the set).
]]
--- @include "lease"

local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local holder, tenant = ARGV[3], ARGV[4]
local now = server_now()
-- The count of tenant t is the size of its set `key`, written whenever the set changes.
local function count(t, key)
  local n = redis.call('ZCARD', key)
  if n == 0 then redis.call('ZREM', KEYS[3], t) else redis.call('ZADD', KEYS[3], n, t) end
  return n
end
local held = redis.call('ZSCORE', KEYS[2], holder)
if held then
  held = tonumber(held)
  if held - now > max_wait then return tostring(now - held) end
  redis.call('ZREM', KEYS[2], holder)
  count(tenant, KEYS[2])
  if held >= now - max_wait then return tostring(math.max(held - now, 0)) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - max_wait)
count(tenant, KEYS[2])
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local wait = slot - now
local nxt = slot + interval
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
if wait <= max_wait then return tostring(wait) end
local ttl = math.ceil(wait * 1000) + 60000
local mine = redis.call('ZCARD', KEYS[2])
-- The tenant holding the most, its count checked against its set (lapsed entries trimmed): a
-- count that was off (its set expired or was erased) is corrected and the next one looked at, a
-- few at most per call (each correction is for good).
local top, other
for _ = 1, 4 do
  top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if not top[1] or top[1] == tenant then break end
  other = ARGV[5] .. top[1]
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
redis.call('ZADD', KEYS[2], slot, holder)
redis.call('PEXPIRE', KEYS[2], ttl)
count(tenant, KEYS[2])
redis.call('PEXPIRE', KEYS[3], ttl)
return tostring(-wait)
