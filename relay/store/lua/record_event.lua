--[[
  Record a transition, all of its delivery work and all the work it causes, in one step: the
  event, the run's new fields, one lane entry per subscriber, the upstream index, and the run's
  schedule (drop the start entry, set or drop the next poll). A duplicate (the event exists: a
  status seen again, a run tracked again, a vendor run shared by two relay runs) still moves the
  run — fields and schedule — and only makes no event and no delivery. An observation made before
  the run's last recorded one (observed_at, server time of the claim that made it) changes nothing.
  A subscription deleted since it was matched gets nothing; a disabled one gets its lane filled but
  not scheduled (parked): enabling it schedules every lane in its pairs set. A new event is also
  appended to the tenant's pull log (GET /v1/events, relay/pull.py).
  With a phases key, the length of the phase the transition ended is learned in the same step
  (includes/phase.lua, as lua/learn_phase.lua: that hash ends as it says), for a new event or a
  duplicate only (a transition that changes nothing teaches nothing).
  KEYS: run, event, run_events, due_deliver, held_due ('' none), held_leases ('' none),
  next_due ('' none), upstream ('' none), tenant_events, phases ('' none)
  ARGV: event_id, expected_sequence, now, body, type, status, n_run_fields, n_subs,
  token, observed_at ('' none), next_delay ('' none), run_id,
  phase status, phase seconds, weight, ttl, max_statuses (the learning's; '' each without one),
  run field/value pairs..., sub ids..., retention (last: the pull log's, seconds)
  Returns 'ok', 'dup', 'gone' (run deleted or stopped), 'stale' (sequence moved: re-read, retry),
  'old' (an older observation), 'lost' (the lease is another worker's now) or 'joined' (a start
  whose vendor run the tenant already tracks in another run: this one joined it, includes/join.lua).
  The run's callback subscriptions are read here, so one moved to it by a join is never missed.
]]
--- @include "lifecycle"
--- @include "lease"
--- @include "join"
--- @include "phase"

local run_id = ARGV[12]
if not lease_held(KEYS[6], run_id, ARGV[9]) then return 'lost' end
-- A deleted or stopped run records nothing more: a poll in flight when DELETE landed must not
-- write the run back to life.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'stopped' then return 'gone' end
if KEYS[8] ~= '' and jn_join(KEYS[8], run_id, KEYS[5], KEYS[6], ARGV[3]) then return 'joined' end
local obs = tonumber(ARGV[10]) or 0
if obs > 0 and obs < tonumber(redis.call('HGET', KEYS[1], 'observed_at') or '0') then
  return 'old'
end
local dup = redis.call('EXISTS', KEYS[2]) == 1
local nf = tonumber(ARGV[7])
local ns = tonumber(ARGV[8])
local fields = {'updated_at', ARGV[3]}
for i = 18, 17 + 2 * nf do fields[#fields + 1] = ARGV[i] end
if obs > 0 then fields[#fields + 1] = 'observed_at'; fields[#fields + 1] = ARGV[10] end
if not dup then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'sequence') or '0')
  if seq + 1 ~= tonumber(ARGV[2]) then return 'stale' end
  local subs = {}
  local enabled = {}
  local matched = {}
  for i = 18 + 2 * nf, 17 + 2 * nf + ns do matched[#matched + 1] = ARGV[i] end
  for _, sub in ipairs(jn_callbacks(KEYS[1], matched)) do
    local on = redis.call('HGET', key_subscription(sub), 'enabled')
    if on then
      subs[#subs + 1] = sub
      enabled[sub] = on == '1'
    end
  end
  redis.call('HSET', KEYS[2], 'id', ARGV[1], 'run_id', run_id, 'sequence', ARGV[2],
    'created_at', ARGV[3], 'body', ARGV[4], 'type', ARGV[5], 'status', ARGV[6],
    'subs', table.concat(subs, ','))
  redis.call('RPUSH', KEYS[3], ARGV[1])
  fields[#fields + 1] = 'sequence'; fields[#fields + 1] = ARGV[2]
  local now = server_now()
  for _, sub in ipairs(subs) do
    redis.call('RPUSH', key_lane(sub, run_id), ARGV[1])
    redis.call('HSET', key_delivery(ARGV[1], sub), 'state', 'pending', 'attempts', 0,
      'updated_at', ARGV[3])
    redis.call('SADD', key_sub_pairs(sub), run_id)
    if enabled[sub] then redis.call('ZADD', KEYS[4], 'NX', now, sub .. '|' .. run_id) end
  end
  lc_queued(run_id, #subs)
  if #subs > 0 then nudge(KEYS[4]) end
  -- The pull log: the event id on the tenant's stream, trimmed by MINID to the retention (Redis
  -- time, as the stream ids are) and expiring a retention after its newest entry; then one
  -- wake-up for the api processes' long-polls.
  local keep = tonumber(ARGV[#ARGV])
  local oldest = math.floor((now - keep) * 1000)
  redis.call('XADD', KEYS[9], 'MINID', '~', oldest, '*', 'e', ARGV[1])
  redis.call('EXPIRE', KEYS[9], math.ceil(keep))
  redis.call('PUBLISH', KEY_EVENTS_WAKE, KEYS[9])
end
redis.call('HSET', KEYS[1], unpack(fields))
if KEYS[8] ~= '' then redis.call('SET', KEYS[8], run_id) end
if KEYS[5] ~= '' then release(KEYS[5], KEYS[6], run_id, nil) end
if KEYS[7] ~= '' then
  local delay = tonumber(ARGV[11])
  if redis.call('HGET', KEYS[1], 'poll_again') then
    redis.call('HDEL', KEYS[1], 'poll_again')
    delay = 0
  end
  redis.call('ZADD', KEYS[7], server_now() + delay, run_id)
  if delay < ${NAP} then nudge(KEYS[7]) end
elseif KEYS[5] ~= '' then
  redis.call('HDEL', KEYS[1], 'poll_again')
end
-- lifecycle (includes/lifecycle.lua): the listing indexes follow the new status and state; an
-- ended run with nothing to deliver starts retention.
lc_index(run_id)
lc_settle(run_id)
if KEYS[10] ~= '' then
  ph_learn(KEYS[10], ARGV[13], tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]),
    tonumber(ARGV[17]))
end
if dup then return 'dup' end
return 'ok'
