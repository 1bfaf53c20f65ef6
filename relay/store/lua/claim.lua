--[[
  Claim due members by pushing their score to a lease deadline; an unfinished claim (its worker
  died) becomes due again when the lease passes. The claim time is the job's observation time
  (see RECORD_EVENT). When nothing is due, the time the next member is due (a lease deadline
  included) tells the pump how long it may sleep (includes/nudge.lua); when the batch was full,
  another idle worker is nudged, as more may be due.

  With `runs` (the poll pump's due set, whose members are run ids), each member's run hash is
  read in the same step and returned after its fails: the poll job's first read, without a round
  trip of its own (bench/polling.py), and as of the claim time, the job's observation time.
  KEYS: due, leases
  ARGV: lease seconds, limit, runs ('1' to read each member's run hash; '' or absent: no)
  Returns {server_now, next due ('' unless nothing was claimed; '' too when the set is empty),
  member, token, fails, [the run hash as field, value, ... with `runs`], ...}.
]]
--- @include "lease"

local now = server_now()
local limit = tonumber(ARGV[2])
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local out = {string.format('%.6f', now), ''}
if #items == 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then out[2] = first[2] end
  return out
end
local deadline = now + tonumber(ARGV[1])
for _, m in ipairs(items) do
  redis.call('ZADD', KEYS[1], deadline, m)
  local token = redis.call('ZSCORE', KEYS[1], m)
  redis.call('HSET', KEYS[2], m, token)
  out[#out + 1] = m
  out[#out + 1] = token
  out[#out + 1] = redis.call('HGET', key_lease_fails(KEYS[2]), m) or '0'
  if ARGV[3] == '1' then out[#out + 1] = redis.call('HGETALL', key_run(m)) end
end
if #items == limit then nudge(KEYS[1]) end
return out
