--[[
  Everything a delivery needs to start, in one round trip: the lane's head event id, its body,
  this subscriber's attempt count for it, the subscription hash, and whether the lane was woken
  for a freed delivery slot (includes/wake.lua: its waiting score, -1 when woken). Read-only.
  KEYS: lane, sub, waiting. ARGV: sub_id, lane member.
  Returns {head|nil, body|nil, attempts|nil, {sub field, value...}, waiting score|nil}
]]

local sub = redis.call('HGETALL', KEYS[2])
local head = redis.call('LINDEX', KEYS[1], 0)
local woken = redis.call('ZSCORE', KEYS[3], ARGV[2])
if not head then return {false, false, false, sub, woken} end
local body = redis.call('HGET', key_event(head), 'body')
local attempts = redis.call('HGET', key_delivery(head, ARGV[1]), 'attempts')
return {head, body, attempts, sub, woken}
