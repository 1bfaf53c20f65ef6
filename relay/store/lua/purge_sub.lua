--[[
  One batch of a deleted subscription's purge (the `chores` pump, workers/chores.py): up to
  `batch` of its lanes, with the delivery records of the events on them, and up to `batch` of its
  dead letters' records. Each lane's runs count one delivery fewer per entry and may start their
  retention now (lifecycle `lc_settle`); a dead or retrying record deleted counts so no more
  on its run (includes/delivery_state.lua). Bounded: `batch` lanes of at most a run's events each,
  and `batch` dead letters. A crash between batches loses nothing: the chore keeps its lease
  and comes back; every batch is whole or not at all.

  KEYS: pairs, dead, due_deliver, due_chores, chore leases
  ARGV: sub_id, batch, chore member, token
  Returns 1 when more is left (the chore is due again at once), 0 when the purge is done (the
  chore leaves the schedule), -1 when the lease was lost (nothing written).
]]
--- @include "lifecycle"
--- @include "lease"
--- @include "delivery_state"

if not lease_held(KEYS[5], ARGV[3], ARGV[4]) then return -1 end
local sub, batch = ARGV[1], tonumber(ARGV[2])
local deliver_leases = key_leases(KEYS[3])
for _, run_id in ipairs(redis.call('SPOP', KEYS[1], batch)) do
  local lane = key_lane(sub, run_id)
  local events = redis.call('LRANGE', lane, 0, -1)
  for _, evt in ipairs(events) do
    ds_set(key_delivery(evt, sub), run_id, nil)
    redis.call('DEL', key_delivery(evt, sub))
  end
  redis.call('DEL', lane)
  local pair = sub .. '|' .. run_id
  redis.call('ZREM', KEYS[3], pair)
  redis.call('HDEL', deliver_leases, pair)
  redis.call('HDEL', key_lease_fails(deliver_leases), pair)
  if run_id ~= 'ping' then
    lc_queued(run_id, -#events)
    lc_settle(run_id)
  end
end
for _, item in ipairs(redis.call('ZRANGE', KEYS[2], 0, batch - 1)) do
  local evt, run_id = string.match(item, '^([^|]*)|(.*)$')
  if evt then
    ds_set(key_delivery(evt, sub), run_id, nil)
    redis.call('DEL', key_delivery(evt, sub))
  end
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, batch - 1)
if redis.call('SCARD', KEYS[1]) > 0 or redis.call('ZCARD', KEYS[2]) > 0 then
  release(KEYS[4], KEYS[5], ARGV[3], server_now())
  return 1
end
redis.call('DEL', KEYS[1], KEYS[2])
release(KEYS[4], KEYS[5], ARGV[3], nil)
return 0
