--[[
  Where a run's keys die (invariant 8): the lifecycle functions every script that ends, settles,
  reopens, sweeps or erases a run calls (relay/store/lifecycle.py says when each is called).

  lc_index(run_id)           the listing indexes (and the active-run quota set) follow the run's
                             status and state
  lc_unindex(run_id, ...)    the run leaves every listing index (the `delivery` ones of
                             includes/delivery_state.lua too)
  lc_now_ms()                Redis's clock, in ms
  lc_keys(run_id)            every data key of a run (not its hash): what expires with it
  lc_subs(run_id)            the subscriptions its events went to
  lc_queued(run_id, n)       n more (or, negative, fewer) of its deliveries wait in lanes
  lc_bury(...)               its upstream de-duplication key, made a tombstone or deleted
  lc_settle(run_id)          start its retention clock if it ended and its deliveries settled;
                             an ended run with deliveries still queued is due for the sweep a
                             retention after its end all the same (sweep_run.lua expires the
                             parked ones)
  lc_reopen(run_id)          a delivery was queued again: its keys lose their expiry
]]
local LC_ENDED = {completed = true, start_failed = true, tracking_failed = true, stopped = true,
  joined = true}
-- Listing indexes (relay/store/runs.py list_runs): per tenant, zsets scored by created_at, by
-- provider, by status or state, and by both. The values indexed are kept on the run hash
-- (ix_status, ix_state) so a change moves the entry and the sweep knows what to remove.
local function lc_index(run_id)
  local rk = key_run(run_id)
  local f = redis.call('HMGET', rk, 'tenant', 'provider', 'status', 'state', 'created_at',
    'ix_status', 'ix_state')
  if not f[1] then return end
  local t, p, score = f[1], f[2], f[5]
  if not f[6] and not f[7] then redis.call('ZADD', key_runs_by_provider(t, p), score, run_id) end
  local now_vals = {f[3] or '', f[4] or ''}
  local old_vals = {f[6] or '', f[7] or ''}
  for i = 1, 2 do
    if now_vals[i] ~= old_vals[i] then
      if old_vals[i] ~= '' and old_vals[i] ~= now_vals[3 - i] then
        redis.call('ZREM', key_runs_by_status(t, old_vals[i]), run_id)
        redis.call('ZREM', key_runs_by_provider_status(t, p, old_vals[i]), run_id)
      end
      if now_vals[i] ~= '' then
        redis.call('ZADD', key_runs_by_status(t, now_vals[i]), score, run_id)
        redis.call('ZADD', key_runs_by_provider_status(t, p, now_vals[i]), score, run_id)
      end
    end
  end
  redis.call('HSET', rk, 'ix_status', now_vals[1], 'ix_state', now_vals[2])
  -- The quota's count of active runs (CREATE_RUN): a run leaves it when it stops being active.
  if f[4] ~= 'starting' and f[4] ~= 'tracking' then
    redis.call('SREM', key_tenant_active(t), run_id)
  end
end
local function lc_unindex(run_id, tenant, provider, status, state)
  redis.call('ZREM', key_tenant_runs(tenant), run_id)
  redis.call('SREM', key_tenant_active(tenant), run_id)
  redis.call('ZREM', key_runs_by_provider(tenant, provider), run_id)
  for _, v in ipairs({status or '', state or ''}) do
    if v ~= '' then
      redis.call('ZREM', key_runs_by_status(tenant, v), run_id)
      redis.call('ZREM', key_runs_by_provider_status(tenant, provider, v), run_id)
    end
  end
  for _, outcome in ipairs({'dead', 'failing'}) do
    redis.call('ZREM', key_runs_by_delivery(tenant, outcome), run_id)
    redis.call('ZREM', key_runs_by_provider_delivery(tenant, provider, outcome), run_id)
  end
end
local function lc_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Every data key of a run (not its hash): what expires with it and what erase deletes.
local function lc_keys(run_id)
  local events = key_run_events(run_id)
  local out = {events}
  for _, e in ipairs(redis.call('LRANGE', events, 0, -1)) do
    out[#out + 1] = key_event(e)
    local subs = redis.call('HGET', key_event(e), 'subs') or ''
    for sub in string.gmatch(subs, '[^,]+') do
      out[#out + 1] = key_delivery(e, sub)
    end
  end
  -- Its callback subscriptions: its own, and those of runs that joined it (includes/join.lua).
  for cb in string.gmatch(redis.call('HGET', key_run(run_id), 'callback_sub') or '', '[^,]+') do
    out[#out + 1] = key_subscription(cb)
    out[#out + 1] = key_sub_attempts(cb)
    out[#out + 1] = key_sub_dead(cb)
    out[#out + 1] = key_sub_pairs(cb)
  end
  return out
end
-- The subscriptions the run's events went to (comma-separated, each once).
local function lc_subs(run_id)
  local seen, out = {}, {}
  for _, e in ipairs(redis.call('LRANGE', key_run_events(run_id), 0, -1)) do
    local subs = redis.call('HGET', key_event(e), 'subs') or ''
    for sub in string.gmatch(subs, '[^,]+') do
      if not seen[sub] then seen[sub] = true; out[#out + 1] = sub end
    end
  end
  return table.concat(out, ',')
end
-- The run's deliveries waiting in lanes (pending or retrying, parked ones included) are counted
-- on the run hash (`pending`) by the scripts that push and pop lane entries, so settling is one
-- HGET, not a walk of its events and subscribers (invariant 9). A ping has no run.
local function lc_queued(run_id, n)
  local rk = key_run(run_id)
  if redis.call('EXISTS', rk) == 1 then redis.call('HINCRBY', rk, 'pending', n) end
end
-- The upstream de-duplication key of a run that is gone. A run of an agent (the only kind a
-- watch lists) leaves a tombstone (TOMB, ttl ms) so the watch does not track it again; any
-- other run's key just goes (tracking its upstream run again makes a new run).
local function lc_bury(run_id, tenant, provider, agent_id, upstream_run_id, ttl)
  local up = key_upstream(tenant, provider, agent_id or '', upstream_run_id)
  if redis.call('GET', up) ~= run_id then return end
  if agent_id and agent_id ~= '' then
    redis.call('SET', up, '${TOMB}', 'PX', ttl)
  else
    redis.call('DEL', up)
  end
end
-- Start the run's retention clock if it ended and its deliveries settled. Returns 1 if started.
-- An ended run with deliveries still queued is put on the retention schedule a retention after
-- its end (NX: the first time it is seen ended); the sweep then expires the deliveries parked
-- on a disabled subscription, so a dead endpoint cannot keep runs for ever (invariant 8).
local function lc_settle(run_id)
  local rk = key_run(run_id)
  local f = redis.call('HMGET', rk, 'state', 'retention', 'retain_until', 'pending')
  if not f[1] or not LC_ENDED[f[1]] or f[3] then return 0 end
  local ret_ms = math.floor(tonumber(f[2] or '${DEFAULT_RETENTION}') * 1000)
  local until_ms = lc_now_ms() + ret_ms
  if tonumber(f[4] or '0') > 0 then
    redis.call('ZADD', KEY_RETENTION, 'NX', string.format('%.3f', until_ms / 1000), run_id)
    return 0
  end
  -- Bounded by the run's events (the vendor's statuses) times the subscriptions they went to.
  for _, k in ipairs(lc_keys(run_id)) do redis.call('PEXPIREAT', k, until_ms) end
  redis.call('HSET', rk, 'retain_until', string.format('%.3f', until_ms / 1000),
    'subs_seen', lc_subs(run_id))
  -- The run hash outlives its data keys by a grace, so a late sweep still knows what to unindex.
  redis.call('PEXPIREAT', rk, until_ms + ${GRACE_MS})
  redis.call('ZADD', KEY_RETENTION, string.format('%.3f', until_ms / 1000), run_id)
  return 1
end
-- A delivery of an ended run was queued again: its keys must outlive it (lc_settle re-arms).
local function lc_reopen(run_id)
  local rk = key_run(run_id)
  if not redis.call('HGET', rk, 'retain_until') then return 0 end
  for _, k in ipairs(lc_keys(run_id)) do redis.call('PERSIST', k) end
  redis.call('PERSIST', rk)
  redis.call('HDEL', rk, 'retain_until')
  redis.call('ZREM', KEY_RETENTION, run_id)
  return 1
end
