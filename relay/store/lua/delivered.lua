--[[
  The receiver took the lane's head (2xx), all of it in one step: the attempt log, the tenant's
  usage, the subscription's failure streak ended, the head finished (includes/finish.lua). And,
  when the worker asks for it, the lease is kept for the lane's next event, which is handed back
  with its body, so a lane's events go out back to back with no claim and no head read between
  them (one round trip per delivery). The lease is kept only while the subscription is enabled
  and no other lane of it waits for a delivery slot (includes/wake.lua), so a lane that keeps
  going never starves another of the same subscriber; the worker bounds how many it takes.
  The attempt is logged and counted even when the lease was lost: the POST was made.
  KEYS: lane, dlv, due_deliver, pairs, dead_index, leases, waiting, sub, attempts_log, usage
  ARGV: event_id, now, pair, run_id, attempts, code, token, attempt record, attempts kept,
        usage ttl + a day, go on ('1'/'0'), lease seconds, sub_id, the worker's sub `updated_at`,
        '1' when the worker saw a failure streak on the sub (`failing_since`, then ended here)
  Returns 0 when the lease was lost or the head is another event; 1 when the lane was let go;
  or {next event id, body|false, attempts|false, {sub field, value...}} when the lease is kept
  for the next event (the sub's fields only when its `updated_at` is not the worker's, else {}).
]]
--- @include "finish"

redis.call('LPUSH', KEYS[9], ARGV[8])
redis.call('LTRIM', KEYS[9], 0, tonumber(ARGV[9]) - 1)
-- The day's counters get their expiry when this script makes them (ARGV[10] is the usage ttl
-- plus a day, so they outlive their last write of the day by the ttl, as usage.commands'
-- refreshed expiry does); every other writer sets one too, so the key never lives without.
redis.call('HINCRBY', KEYS[10], 'deliveries', 1)
if redis.call('HINCRBY', KEYS[10], 'delivered', 1) == 1 then
  redis.call('EXPIRE', KEYS[10], tonumber(ARGV[10]))
end
if ARGV[15] == '1' then redis.call('HDEL', KEYS[8], 'failing_since') end
if not pop_head(KEYS[1], KEYS[2], KEYS[5], KEYS[6], ARGV[3], ARGV[7], ARGV[1], ARGV[2],
    ARGV[4], 'succeeded', ARGV[5], ARGV[6], '', '0') then
  return 0
end
local head = ARGV[11] == '1' and redis.call('LINDEX', KEYS[1], 0)
local sub = head and redis.call('HMGET', KEYS[8], 'enabled', 'updated_at')
if not head or sub[1] ~= '1' or redis.call('ZCARD', KEYS[7]) > 0 then
  let_go(KEYS[1], KEYS[3], KEYS[4], KEYS[6], KEYS[7], ARGV[3], ARGV[4])
  return 1
end
-- Kept: the lease runs a full term from now (the token stays the claim's).
redis.call('ZADD', KEYS[3], 'XX', server_now() + tonumber(ARGV[12]), ARGV[3])
lc_queued(ARGV[4], -1)
local fields = {}
if (sub[2] or '') ~= ARGV[14] then fields = redis.call('HGETALL', KEYS[8]) end
return {head, redis.call('HGET', key_event(head), 'body'),
  redis.call('HGET', key_delivery(head, ARGV[13]), 'attempts'), fields}
