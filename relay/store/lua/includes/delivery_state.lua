--[[
  A delivery's state is about to change: the run's counts of deliveries in a state listed by
  outcome (`dlv_dead` dead-lettered, `dlv_failing` retrying, on the run hash) follow, and so do
  the listing indexes of those outcomes (keys.py `runs_by_delivery`, `runs_by_provider_delivery`):
  the run joins when its count goes 0 -> 1 and leaves when it is back to 0. So "has the run a
  dead delivery left" is one HINCRBY, not a walk of its events (invariant 9). Every script that
  writes or deletes a delivery record's `state` calls this first; a ping's or an operational
  event's delivery has no run hash and counts nothing. The sweep and erase take a run out of
  these indexes with the others (lifecycle `lc_unindex`).

  ds_move(run_id, old, new)   a delivery of run_id goes from state old to new (nil: deleted)
  ds_set(dlv, run_id, new)    the same, reading old from the delivery record dlv
]]
local DS_COUNT = {dead = 'dlv_dead', retrying = 'dlv_failing'}
local DS_OUTCOME = {dlv_dead = 'dead', dlv_failing = 'failing'}

local function ds_move(run_id, old, new)
  local from, to = DS_COUNT[old or ''], DS_COUNT[new or '']
  if from == to then return end
  local rk = key_run(run_id)
  local r = redis.call('HMGET', rk, 'tenant', 'provider', 'created_at')
  if not r[1] or not r[3] then return end
  if from then
    if redis.call('HINCRBY', rk, from, -1) <= 0 then
      redis.call('HDEL', rk, from)
      redis.call('ZREM', key_runs_by_delivery(r[1], DS_OUTCOME[from]), run_id)
      redis.call('ZREM', key_runs_by_provider_delivery(r[1], r[2], DS_OUTCOME[from]), run_id)
    end
  end
  if to then
    if redis.call('HINCRBY', rk, to, 1) == 1 then
      redis.call('ZADD', key_runs_by_delivery(r[1], DS_OUTCOME[to]), r[3], run_id)
      redis.call('ZADD', key_runs_by_provider_delivery(r[1], r[2], DS_OUTCOME[to]), r[3], run_id)
    end
  end
end

local function ds_set(dlv, run_id, new)
  local old = redis.call('HGET', dlv, 'state')
  if old == new then return end
  ds_move(run_id, old or nil, new)
end
