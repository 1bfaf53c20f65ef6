--[[
  POST /v1/runs: a run (started or tracked) recorded together with its first unit of work, its
  idempotency record, its upstream key, its callback subscription and its place in the quota.
  KEYS: run, tenant_runs, due, idem ('' to skip), upstream ('' to skip), callback sub ('' to skip),
  tenant_active ('' to skip: not counted against RELAY_MAX_ACTIVE_RUNS),
  input idem ('' to skip: the client's input.idempotencyKey, checked and kept as KEYS[4] is),
  watch ('' to skip: the watch that found the run; gone → nothing written)
  ARGV: run_id, now, due_at, body_hash, idem_ttl, max_active, n_sub_fields,
  sub field/value pairs..., run field/value pairs...
  Returns {outcome, run id}: created | existing | conflict | input_conflict | tracked | quota |
  gone (all but created: nothing written).
  The run's callback subscription is written in the same step, so no crash leaves a callback
  subscription without its run, or a run whose callback is never sent.
  The active set is the quota's count: the run joins it here and leaves it in the script that ends
  it, so the set is bounded by the limit and the check is one SCARD.
]]
--- @include "lifecycle"
--- @include "nudge"

-- A run found by a watch listing that was in flight when the watch went (DELETE, erase-tenant).
if KEYS[9] ~= '' and redis.call('EXISTS', KEYS[9]) == 0 then return {'gone', ''} end
if KEYS[4] ~= '' then
  local seen = redis.call('HMGET', KEYS[4], 'body_hash', 'run_id')
  if seen[2] then
    if seen[1] == ARGV[4] then return {'existing', seen[2]} end
    return {'conflict', seen[2]}
  end
end
if KEYS[8] ~= '' then
  local seen = redis.call('HMGET', KEYS[8], 'body_hash', 'run_id')
  if seen[2] then
    if seen[1] == ARGV[4] then return {'existing', seen[2]} end
    return {'input_conflict', seen[2]}
  end
end
if KEYS[5] ~= '' then
  local known = redis.call('GET', KEYS[5])
  -- A stopped run (DELETE) does not hold its upstream run: tracking it again makes a new run.
  if known then
    local state = redis.call('HGET', key_run(known), 'state')
    if state and state ~= 'stopped' then return {'tracked', known} end
  end
end
-- The active set is the quota's count, kept exact by the scripts that change a run's state
-- (lifecycle `lc_index` takes a run out when it stops being active, sweep and erase too), so the
-- check is one SCARD: no walk of the set, whatever the tenant's size (invariant 9).
if KEYS[7] ~= '' then
  if redis.call('SCARD', KEYS[7]) >= tonumber(ARGV[6]) then return {'quota', ''} end
  redis.call('SADD', KEYS[7], ARGV[1])
end
local nsub = tonumber(ARGV[7])
local fields = {}
for i = 8 + 2 * nsub, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
nudge(KEYS[3])
if KEYS[6] ~= '' and nsub > 0 then
  local sub = {}
  for i = 8, 7 + 2 * nsub do sub[#sub + 1] = ARGV[i] end
  redis.call('HSET', KEYS[6], unpack(sub))
end
if KEYS[4] ~= '' then
  redis.call('HSET', KEYS[4], 'body_hash', ARGV[4], 'run_id', ARGV[1])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
if KEYS[8] ~= '' then
  redis.call('HSET', KEYS[8], 'body_hash', ARGV[4], 'run_id', ARGV[1])
  redis.call('EXPIRE', KEYS[8], ARGV[5])
end
if KEYS[5] ~= '' then redis.call('SET', KEYS[5], ARGV[1]) end
-- lifecycle (includes/lifecycle.lua): the listing indexes by provider and status.
lc_index(ARGV[1])
return {'created', ARGV[1]}
