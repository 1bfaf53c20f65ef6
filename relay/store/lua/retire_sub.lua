--[[
  DELETE /v1/subscriptions/{id}, the part done at once (constant work): the subscription leaves
  the API, the tenant's quota and every new recording (RECORD_EVENT fills no lane for a hash that
  is gone), and its purge is scheduled: the `chores` pump then removes its lanes, their delivery
  records and its dead letters in bounded batches (purge_sub.lua), whatever their number. The
  attempt log is left to expire.

  KEYS: sub, tenant_subs, waiting lanes (includes/wake.lua), attempts, due_chores
  ARGV: sub_id, attempts_ttl, chore member
  Returns 1 (retired) or 0 (no such subscription).
]]
--- @include "nudge"

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[2]))
local t = redis.call('TIME')
redis.call('ZADD', KEYS[5], 'NX', tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[3])
nudge(KEYS[5])
return 1
