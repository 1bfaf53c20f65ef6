--[[
  A notice for a tenant, kept at most once per gate period (the gate key expires), the list
  trimmed to `keep` (relay/tenancy/notices.py says what notices are); and, through the very same
  gate, the operational event that tells it (relay/delivery/events.py), queued for the tenant's
  subscriptions whose filter names its type.

  keep_notice(gate, notices, gate_ttl, notice, keep)   returns true if the notice was kept

  tell_subs(tenant, type, about, event_id, body, now, ttl, lane_run)   returns how many queued
    One event hash (no run, `sequence` 0, expiring after `ttl` seconds like a ping's) and one
    delivery per subscription of the tenant whose `filter.event_types` lists `type`, except
    `about` (the subscription the notice is about: a disabled one is never told it was
    disabled). Each goes at the end of the subscription's run-less lane (`lane_run`, shared
    with pings), scheduled if the subscription is enabled, parked (filled, not scheduled) if
    not. Bounded by the tenant's subscriptions (RELAY_MAX_SUBSCRIPTIONS).

  keep_and_tell(gate, notices, gate_ttl, notice, keep, tenant, type, about, event_id, body, now,
    ttl, lane_run)   both, the event only if the notice was kept; returns true if kept
]]
--- @include "nudge"

local function keep_notice(gate, notices, gate_ttl, notice, keep)
  if not redis.call('SET', gate, '1', 'NX', 'EX', tonumber(gate_ttl)) then return false end
  redis.call('LPUSH', notices, notice)
  redis.call('LTRIM', notices, 0, tonumber(keep) - 1)
  return true
end

local function nt_wants(raw, event_type)
  if not raw then return false end
  local ok, flt = pcall(cjson.decode, raw)
  if not ok or type(flt) ~= 'table' or type(flt.event_types) ~= 'table' then return false end
  for _, t in ipairs(flt.event_types) do
    if t == event_type then return true end
  end
  return false
end

local function tell_subs(tenant, event_type, about, event_id, body, now, ttl, lane_run)
  local told, enabled = {}, {}
  for _, sub in ipairs(redis.call('SMEMBERS', key_tenant_subs(tenant))) do
    if sub ~= about then
      local f = redis.call('HMGET', key_subscription(sub), 'filter', 'enabled')
      if nt_wants(f[1], event_type) then
        told[#told + 1] = sub
        enabled[sub] = f[2] == '1'
      end
    end
  end
  if #told == 0 then return 0 end
  table.sort(told)
  local ek = key_event(event_id)
  redis.call('HSET', ek, 'id', event_id, 'run_id', '', 'tenant', tenant, 'type', event_type,
    'sequence', '0', 'created_at', now, 'body', body, 'subs', table.concat(told, ','))
  redis.call('EXPIRE', ek, tonumber(ttl))
  local due = tonumber(now)
  for _, sub in ipairs(told) do
    local dlv = key_delivery(event_id, sub)
    redis.call('RPUSH', key_lane(sub, lane_run), event_id)
    redis.call('HSET', dlv, 'state', 'pending', 'attempts', 0, 'updated_at', now)
    redis.call('EXPIRE', dlv, tonumber(ttl))
    redis.call('SADD', key_sub_pairs(sub), lane_run)
    if enabled[sub] then redis.call('ZADD', KEY_DUE_DELIVER, 'NX', due, sub .. '|' .. lane_run) end
  end
  nudge(KEY_DUE_DELIVER)
  return #told
end

local function keep_and_tell(gate, notices, gate_ttl, notice, keep, tenant, event_type, about,
    event_id, body, now, ttl, lane_run)
  if not keep_notice(gate, notices, gate_ttl, notice, keep) then return false end
  tell_subs(tenant, event_type, about, event_id, body, now, ttl, lane_run)
  return true
end
