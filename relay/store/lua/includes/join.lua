--[[
  One relay run per (tenant, vendor run) (DESIGN.md "the public contract", POST /v1/runs).

  jn_join(upstream_key, run_id, held_due, held_leases, now)
      At the point a start is recorded (RECORD_EVENT with an upstream key): when the vendor
      answered with a run the tenant already tracks (the upstream key names another run that
      still exists, is not stopped and is still retained), this run joins that one instead of
      tracking the vendor run a second time. The run ends as `joined` with `joined_run_id`; its
      start lease is released; its callback subscription moves to the existing run, with that
      run's events recorded so far queued on the callback's lane in order (so it gets every
      status, with no gap in `sequence`, and the later ones through RECORD_EVENT as any callback
      of that run). Returns the existing run's id, or nil (no join: record as usual).
  jn_callbacks(run_key, ids)
      `ids` (a list of subscription ids) with the run's callback subscriptions (`callback_sub`,
      comma-separated: its own and those of runs that joined it) added, each once.
]]
--- @include "lifecycle"
--- @include "lease"

local function jn_callbacks(run_key, ids)
  local seen, out = {}, {}
  for _, id in ipairs(ids) do
    if not seen[id] then seen[id] = true; out[#out + 1] = id end
  end
  for cb in string.gmatch(redis.call('HGET', run_key, 'callback_sub') or '', '[^,]+') do
    if not seen[cb] then seen[cb] = true; out[#out + 1] = cb end
  end
  return out
end

local function jn_join(upstream_key, run_id, held_due, held_leases, now)
  local known = redis.call('GET', upstream_key)
  if not known or known == run_id then return nil end
  local xk = key_run(known)
  local x = redis.call('HMGET', xk, 'state', 'retain_until', 'callback_sub')
  if not x[1] or x[1] == 'stopped' then return nil end
  if x[2] and tonumber(x[2]) <= lc_now_ms() / 1000 then return nil end
  local rk = key_run(run_id)
  local cb = redis.call('HGET', rk, 'callback_sub')
  if cb and redis.call('EXISTS', key_subscription(cb)) == 1 then
    redis.call('HSET', key_subscription(cb), 'run_id', known)
    redis.call('HSET', xk, 'callback_sub', x[3] and (x[3] .. ',' .. cb) or cb)
    local events = redis.call('LRANGE', key_run_events(known), 0, -1)
    for _, e in ipairs(events) do
      local ek = key_event(e)
      local subs = redis.call('HGET', ek, 'subs') or ''
      redis.call('HSET', ek, 'subs', subs == '' and cb or (subs .. ',' .. cb))
      redis.call('HSET', key_delivery(e, cb), 'state', 'pending', 'attempts', 0,
        'updated_at', now)
      redis.call('RPUSH', key_lane(cb, known), e)
    end
    if #events > 0 then
      redis.call('SADD', key_sub_pairs(cb), known)
      lc_queued(known, #events)
      if redis.call('HGET', key_subscription(cb), 'enabled') == '1' then
        redis.call('ZADD', KEY_DUE_DELIVER, 'NX', server_now(), cb .. '|' .. known)
        nudge(KEY_DUE_DELIVER)
      end
      -- The existing run's keys (the moved callback's now among them) wait for these deliveries.
      lc_reopen(known)
    end
  end
  redis.call('HDEL', rk, 'callback_sub')
  redis.call('HSET', rk, 'state', 'joined', 'joined_run_id', known,
    'upstream_run_id', redis.call('HGET', xk, 'upstream_run_id') or '', 'updated_at', now)
  if held_leases ~= '' then release(held_due, held_leases, run_id, nil) end
  redis.call('ZREM', KEY_DUE_START, run_id)
  redis.call('ZREM', KEY_DUE_POLL, run_id)
  -- lifecycle: out of the active-run quota and into the `joined` listing; nothing of its own
  -- is pending, so its retention starts now.
  lc_index(run_id)
  lc_settle(run_id)
  return known
end
