--[[
  Everything a delivery needs to start, in one round trip: the lane's head event id, its body,
  this subscriber's attempt count for it, the subscription hash, whether the lane was woken
  for a freed delivery slot (includes/wake.lua: its waiting score, -1 when woken), and, when
  tracing is on, the run's trace context (relay/tracing.py). Read-only.
  KEYS: lane, sub, waiting, run ('' when tracing is off: nothing read).
  ARGV: sub_id, lane member.
  Returns {head|nil, body|nil, attempts|nil, {sub field, value...}, waiting score|nil,
  {traceparent|nil, tracestate|nil} (only with KEYS[4])}
]]

local sub = redis.call('HGETALL', KEYS[2])
local head = redis.call('LINDEX', KEYS[1], 0)
local woken = redis.call('ZSCORE', KEYS[3], ARGV[2])
if not head then return {false, false, false, sub, woken} end
local body = redis.call('HGET', key_event(head), 'body')
local attempts = redis.call('HGET', key_delivery(head, ARGV[1]), 'attempts')
if KEYS[4] ~= '' then
  return {head, body, attempts, sub, woken, redis.call('HMGET', KEYS[4], 'traceparent', 'tracestate')}
end
return {head, body, attempts, sub, woken}
