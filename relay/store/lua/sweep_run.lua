--[[
  The sweep of one run whose retention passed: everything that cannot expire by itself (its
  listing index entries, its schedule and lease entries, its subscriptions' old dead letters and
  attempts,
  the tenant's old notices, its watch's seen-set member, its upstream key).

  A run that ended with deliveries still queued comes here a retention after its end (lifecycle
  `lc_settle`): those parked on a subscription that is disabled now expire (each recorded as
  `expired` on its delivery record and in the subscription's attempt log, and the tenant told
  once per subscription and gate period); those on an enabled subscription are still being
  delivered, so the run stays and is looked at again `recheck` seconds later (its last delivery
  settles it sooner). Bounded by the subscriptions its events went to, times its events. An
  expired delivery no longer counts as retrying (includes/delivery_state.lua).

  KEYS: none (every key is built by the generated key_* functions from relay/store/keys.py)
  ARGV[1] run_id
  ARGV[2] recheck (s): when to look again at a run with live deliveries
  ARGV[3] tombstone ttl (ms)
  ARGV[4] attempt log length (RELAY_ATTEMPT_RETENTION)
  ARGV[5] notice gate (s), ARGV[6] notices kept
  ARGV[7] event id (the `deliveries.expired` operational event; `_<n>` appended past the first),
  ARGV[8] its ISO timestamp, ARGV[9] its ttl (s), ARGV[10] the run-less lane's run ('ping')
  The time is Redis's.
  Returns {swept (1/0), deliveries expired, tenant}.
]]
--- @include "lifecycle"
--- @include "trim_old"
--- @include "notice"
--- @include "unlease"
--- @include "delivery_state"

local run_id = ARGV[1]
local now = lc_now_ms() / 1000
local score = redis.call('ZSCORE', KEY_RETENTION, run_id)
if not score or tonumber(score) > now then return {0, 0, ''} end
local rk = key_run(run_id)
local r = redis.call('HMGET', rk, 'tenant', 'provider', 'agent_id', 'upstream_run_id',
  'watch_id', 'subs_seen', 'retention', 'ix_status', 'ix_state', 'retain_until', 'pending')
local tenant = r[1] or ''
local expired = 0
local told = 0
if r[1] and not r[10] and tonumber(r[11] or '0') > 0 then
  local live = false
  -- Bounded: the subscriptions the run's events went to.
  for sub in string.gmatch(lc_subs(run_id), '[^,]+') do
    local lane = key_lane(sub, run_id)
    local parked = redis.call('LRANGE', lane, 0, -1)
    if #parked > 0 then
      if redis.call('HGET', key_subscription(sub), 'enabled') == '1' then
        live = true
      else
        local attempts = key_sub_attempts(sub)
        for _, evt in ipairs(parked) do
          ds_set(key_delivery(evt, sub), run_id, 'expired')
          redis.call('HSET', key_delivery(evt, sub), 'state', 'expired', 'updated_at', now,
            'next_at', '')
          redis.call('LPUSH', attempts, cjson.encode({event_id = evt, run_id = run_id,
            subscription_id = sub, at = now, outcome = 'expired',
            error = 'retention passed while the subscription was disabled'}))
        end
        redis.call('LTRIM', attempts, 0, tonumber(ARGV[4]) - 1)
        redis.call('DEL', lane)
        redis.call('SREM', key_sub_pairs(sub), run_id)
        redis.call('ZREM', KEY_DUE_DELIVER, sub .. '|' .. run_id)
        lc_queued(run_id, -#parked)
        expired = expired + #parked
        -- The notice and its operational event (relay/delivery/events.py DeliveriesExpired:
        -- its body is the envelope of the notice's fields, built here in that model's shape).
        local data = cjson.encode({subscription_id = sub, run_id = run_id, count = #parked,
          at = now})
        local body = '{"type":"deliveries.expired","timestamp":' .. cjson.encode(ARGV[8]) ..
          ',"data":' .. data .. '}'
        told = told + 1
        local evt_id = ARGV[7]
        if told > 1 then evt_id = evt_id .. '_' .. told end
        keep_and_tell(key_notice_gate(tenant, 'deliveries.expired:' .. sub),
          key_tenant_notices(tenant), ARGV[5], cjson.encode({type = 'deliveries.expired',
            subscription_id = sub, run_id = run_id, count = #parked, at = now}), ARGV[6],
          tenant, 'deliveries.expired', sub, evt_id, body, now, ARGV[9], ARGV[10])
      end
    end
  end
  if live then
    redis.call('ZADD', KEY_RETENTION, now + tonumber(ARGV[2]), run_id)
    return {0, expired, tenant}
  end
end
redis.call('ZREM', KEY_RETENTION, run_id)
r[6] = r[6] or lc_subs(run_id)
for _, k in ipairs(lc_keys(run_id)) do redis.call('DEL', k) end
redis.call('DEL', rk)
redis.call('ZREM', KEY_DUE_POLL, run_id)
redis.call('ZREM', KEY_DUE_START, run_id)
ul_forget(KEY_DUE_POLL, run_id)
ul_forget(KEY_DUE_START, run_id)
if not r[1] then return {1, expired, tenant} end
lc_unindex(run_id, tenant, r[2], r[8], r[9])
local cutoff = now - tonumber(r[7] or '${DEFAULT_RETENTION}')
for sub in string.gmatch(r[6] or '', '[^,]+') do
  ul_forget(KEY_DUE_DELIVER, sub .. '|' .. ARGV[1])
  -- Dead letters and attempts older than the retention: this run's are among them.
  redis.call('ZREMRANGEBYSCORE', key_sub_dead(sub), '-inf', '(' .. cutoff)
  lc_trim_old(key_sub_attempts(sub), cutoff)
end
lc_trim_old(key_tenant_notices(tenant), cutoff)
if r[4] and r[4] ~= '' then
  lc_bury(run_id, tenant, r[2], r[3], r[4], ARGV[3])
  if r[5] and r[5] ~= '' then redis.call('SREM', key_watch_seen(r[5]), r[4]) end
end
return {1, expired, tenant}
