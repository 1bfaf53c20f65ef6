"""Lua scripts for every state change that must be atomic.

Each script is the whole of one decision, so a SIGKILL lands either before it or after it, never
in the middle: that is how "nothing lost" and "one event per transition" hold without locks.
Keys outside KEYS are built from the `relay:` prefix inside the scripts, which is fine on a single
Redis/Valkey or Sentinel primary (the supported deployments) and not meant for Redis Cluster.
"""

from __future__ import annotations

# KEYS: run, tenant_runs, due, idem ('' to skip), upstream ('' to skip),
#       tenant_active ('' to skip: not counted against RELAY_MAX_ACTIVE_RUNS)
# ARGV: run_id, now, due_at, body_hash, idem_ttl, max_active, field, value, field, value, ...
# Returns {outcome, run id}: created | existing | conflict | tracked | quota (nothing written).
# The active set is the quota's count: the run joins it here; when the count reaches the limit,
# the members whose run is no longer starting/tracking (ended, stopped, erased) leave it first, so
# the set is bounded by the limit and the check is exact at the moment it matters.
CREATE_RUN = """
if KEYS[4] ~= '' then
  local seen = redis.call('HMGET', KEYS[4], 'body_hash', 'run_id')
  if seen[2] then
    if seen[1] == ARGV[4] then return {'existing', seen[2]} end
    return {'conflict', seen[2]}
  end
end
if KEYS[5] ~= '' then
  local known = redis.call('GET', KEYS[5])
  -- A stopped run (DELETE) does not hold its upstream run: tracking it again makes a new run.
  if known then
    local state = redis.call('HGET', 'relay:run:' .. known, 'state')
    if state and state ~= 'stopped' then return {'tracked', known} end
  end
end
if KEYS[6] ~= '' then
  local limit = tonumber(ARGV[6])
  if redis.call('SCARD', KEYS[6]) >= limit then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[6])) do
      local st = redis.call('HGET', 'relay:run:' .. id, 'state')
      if st ~= 'starting' and st ~= 'tracking' then redis.call('SREM', KEYS[6], id) end
    end
    if redis.call('SCARD', KEYS[6]) >= limit then return {'quota', ''} end
  end
  redis.call('SADD', KEYS[6], ARGV[1])
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if KEYS[4] ~= '' then
  redis.call('HSET', KEYS[4], 'body_hash', ARGV[4], 'run_id', ARGV[1])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
if KEYS[5] ~= '' then redis.call('SET', KEYS[5], ARGV[1]) end
return {'created', ARGV[1]}
"""

# Claim due members by pushing their score to a lease deadline; an unfinished claim (its worker
# died) becomes due again when the lease passes. KEYS: due. ARGV: now, lease_until, limit.
CLAIM = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(items) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return items
"""

# Record a transition and all of its delivery work in one step.
# KEYS: run, event, run_events, due_deliver, tenant_events
# ARGV: event_id, expected_sequence, now, body, type, status, n_run_fields, n_subs,
#       run field/value pairs..., sub ids..., retention (last: the pull log's, seconds)
# Returns 'dup' (already recorded), 'gone' (run deleted or stopped), 'stale' (sequence moved;
# re-read and retry) or 'ok'.
RECORD_EVENT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'dup' end
-- A deleted or stopped run records nothing more: a poll in flight when DELETE landed must not
-- write the run back to life.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'stopped' then return 'gone' end
local seq = tonumber(redis.call('HGET', KEYS[1], 'sequence') or '0')
if seq + 1 ~= tonumber(ARGV[2]) then return 'stale' end
local run_id = redis.call('HGET', KEYS[1], 'id')
local nf = tonumber(ARGV[7])
local ns = tonumber(ARGV[8])
local subs = {}
local enabled = {}
for i = 9 + 2 * nf, 8 + 2 * nf + ns do
  -- A subscription deleted since it was matched gets nothing; a disabled one gets its lane filled
  -- but not scheduled (parked): enabling it schedules every lane in its pairs set.
  local on = redis.call('HGET', 'relay:sub:' .. ARGV[i], 'enabled')
  if on then
    subs[#subs + 1] = ARGV[i]
    enabled[ARGV[i]] = on == '1'
  end
end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'run_id', run_id, 'sequence', ARGV[2],
  'created_at', ARGV[3], 'body', ARGV[4], 'type', ARGV[5], 'status', ARGV[6],
  'subs', table.concat(subs, ','))
redis.call('RPUSH', KEYS[3], ARGV[1])
local fields = {'sequence', ARGV[2], 'updated_at', ARGV[3]}
for i = 9, 8 + 2 * nf do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
for _, sub in ipairs(subs) do
  redis.call('RPUSH', 'relay:lane:' .. sub .. ':' .. run_id, ARGV[1])
  redis.call('HSET', 'relay:dlv:' .. ARGV[1] .. ':' .. sub, 'state', 'pending', 'attempts', 0,
    'updated_at', ARGV[3])
  redis.call('SADD', 'relay:sub:' .. sub .. ':pairs', run_id)
  if enabled[sub] then redis.call('ZADD', KEYS[4], 'NX', ARGV[3], sub .. '|' .. run_id) end
end
-- The pull log (GET /v1/events, relay/pull.py): the event id on the tenant's stream, trimmed by
-- MINID to the retention (Redis time, as the stream ids are) and expiring a retention after its
-- newest entry; then one wake-up for the api processes' long-polls.
local keep = tonumber(ARGV[#ARGV])
local clock = redis.call('TIME')
local oldest = math.floor((tonumber(clock[1]) - keep) * 1000)
redis.call('XADD', KEYS[5], 'MINID', '~', oldest, '*', 'e', ARGV[1])
redis.call('EXPIRE', KEYS[5], math.ceil(keep))
redis.call('PUBLISH', 'relay:events:wake', KEYS[5])
return 'ok'
"""

# Put one event (back) on a lane with a FRESH retry schedule: redeliver and ping. The delivery's
# attempt count for the schedule goes back to 0 (the attempt log, a separate list, keeps every
# earlier attempt), so it gets the whole retry schedule again and Retry-After is read on its
# first failure. A dead letter of this event for this subscription leaves the dead index in the
# same step, so a later recover cannot send it a second time.
# KEYS: lane, dlv, due_deliver, pairs, dead_index
# ARGV: event_id, now, pair, run_id
# Returns 1.
ENQUEUE_LANE = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'pending', 'attempts', 0, 'next_at', '', 'updated_at', ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[1] .. '|' .. ARGV[4])
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[3])
return 1
"""

# Recover ONE dead letter, as one step: only if it is still in the dead index (so two recovers
# at once queue it once, and one that died again meanwhile is taken from the index it is in),
# take it out of the index, reset the delivery to pending with a fresh retry schedule (attempts
# 0; the attempt log keeps the history), append it to its lane and schedule the lane.
# KEYS: dead_index, lane, dlv, due_deliver, pairs
# ARGV: member ('<event_id>|<run_id>'), event_id, now, pair, run_id
# Returns 1 (queued again) or 0 (no longer dead-lettered: someone else recovered it).
RECOVER_DEAD = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 'state', 'pending', 'attempts', 0, 'next_at', '', 'updated_at', ARGV[3])
redis.call('SADD', KEYS[5], ARGV[5])
redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[4])
return 1
"""

# The end of one listing of a watched agent (workers/watch.py), only if the watch still exists:
# a DELETE during the listing must not be written back over. Marks the new upstream runs seen,
# records the listing and schedules the next one (XX: a deleted watch is not re-added).
# KEYS: watch, watch_seen, due_watch
# ARGV: watch_id, now, runs_seen, next_at, upstream run ids...
# Returns 1 (recorded) or 0 (the watch is gone).
FINISH_LISTING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 5, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[1], 'baselined', '1', 'last_listed_at', ARGV[2], 'last_error', '',
  'runs_seen', ARGV[3])
redis.call('ZADD', KEYS[3], 'XX', ARGV[4], ARGV[1])
return 1
"""

# Everything a delivery needs to start, in one round trip: the lane's head event id, its body,
# this subscriber's attempt count for it, and the subscription hash. Read-only.
# KEYS: lane, sub. ARGV: sub_id. Returns {head|nil, body|nil, attempts|nil, {sub field, value...}}
LANE_HEAD = """
local sub = redis.call('HGETALL', KEYS[2])
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return {false, false, false, sub} end
local body = redis.call('HGET', 'relay:event:' .. head, 'body')
local attempts = redis.call('HGET', 'relay:dlv:' .. head .. ':' .. ARGV[1], 'attempts')
return {head, body, attempts, sub}
"""

# Finish the head of a lane: succeeded or dead-lettered. Only pops if the head is still this
# event, so a late finisher whose lease was taken over cannot pop someone else's event.
# KEYS: lane, dlv, due_deliver, pairs, dead_index
# ARGV: event_id, now, pair, run_id, state, attempts, code, error, dead ('1'/'0')
FINISH_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('HSET', KEYS[2], 'state', ARGV[5], 'attempts', ARGV[6], 'last_code', ARGV[7],
  'last_error', ARGV[8], 'updated_at', ARGV[2], 'next_at', '')
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1] .. '|' .. ARGV[4])
end
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
else
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('SREM', KEYS[4], ARGV[4])
end
return 1
"""

# Retry the head later. KEYS: lane, dlv, due_deliver
# ARGV: event_id, now, pair, attempts, code, error, next_at
RETRY_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'state', 'retrying', 'attempts', ARGV[4], 'last_code', ARGV[5],
  'last_error', ARGV[6], 'updated_at', ARGV[2], 'next_at', ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[3])
return 1
"""

# Drop a lane from the schedule if it is empty (no lost wake-up: the check and the removal are one
# step, and RECORD_EVENT adds with NX). KEYS: lane, due_deliver, pairs. ARGV: pair, run_id
SETTLE_LANE = """
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[2])
  return 1
end
return 0
"""

# Park a lane of a disabled subscription, unless it was re-enabled meanwhile.
# KEYS: sub, due_deliver. ARGV: pair
PARK_LANE = """
if redis.call('HGET', KEYS[1], 'enabled') ~= '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# Shared vendor request budget (GCRA): each caller reserves the next free send slot, spaced
# 1/rate apart, so no 1-second window ever holds more than rate + 1 requests across all workers.
# A slot further ahead than max_wait is not taken; the caller is told how long to stay away.
# KEYS: budget. ARGV: rate (requests/s), now, max_wait. Returns seconds: >= 0 reserved (sleep
# that long, then send), < 0 not reserved (retry after -value).
RESERVE_SLOT = """
local interval = 1 / tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(free, now)
local wait = slot - now
if wait > tonumber(ARGV[3]) then return tostring(-wait) end
redis.call('SET', KEYS[1], tostring(slot + interval), 'EX', 3600)
return tostring(wait)
"""

# Keep a notice for a tenant at most once per gate period (the gate key expires), trimming the
# list. KEYS: gate, notices. ARGV: gate_ttl, notice, keep. Returns 1 if the notice was kept.
KEEP_NOTICE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
"""

# A vendor 401/403 for one run: start or continue its streak (the first 401's time is kept until a
# success clears it) and tell the tenant, once per gate period. The time is Redis's, so every
# worker measures the window on one clock. A run deleted meanwhile is not written back.
# KEYS: run, gate, notices. ARGV: field prefix ('' polls, 'start_' starts), gate_ttl, notice, keep
# Returns {since, now, count} or false when the run is gone.
NOTE_UNAUTHORIZED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
redis.call('HSETNX', KEYS[1], ARGV[1] .. 'unauthorized_since', now)
local since = redis.call('HGET', KEYS[1], ARGV[1] .. 'unauthorized_since')
if since == '' then
  since = now
  redis.call('HSET', KEYS[1], ARGV[1] .. 'unauthorized_since', now)
end
local count = redis.call('HINCRBY', KEYS[1], ARGV[1] .. 'unauthorized', 1)
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
end
return {since, now, count}
"""

# Track a run that gave up again (refresh on a `tracking_failed` run): back to `tracking`, the
# error and every failure streak cleared, the tracking window restarted now, polled at once.
# KEYS: run, due_poll. ARGV: run_id, now. Returns 1 if resumed, 0 if it was not tracking_failed.
RESUME_RUN = """
if redis.call('HGET', KEYS[1], 'state') ~= 'tracking_failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'tracking', 'error', '', 'terminal', '0',
  'tracking_since', ARGV[2], 'updated_at', ARGV[2], 'errors', '0', 'not_found', '0',
  'unauthorized', '0', 'unauthorized_since', '', 'poll_interval', '0')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# Remove a subscription with everything queued for it: its lanes (parked ones included), the
# delivery records of the events still on them and of its dead letters, its schedule entries.
# The attempt log is left to expire. KEYS: sub, pairs, due_deliver, dead, attempts, tenant_subs
# ARGV: sub_id, attempts_ttl
DELETE_SUB = """
local sub = ARGV[1]
for _, run_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local lane = 'relay:lane:' .. sub .. ':' .. run_id
  for _, evt in ipairs(redis.call('LRANGE', lane, 0, -1)) do
    redis.call('DEL', 'relay:dlv:' .. evt .. ':' .. sub)
  end
  redis.call('DEL', lane)
  redis.call('ZREM', KEYS[3], sub .. '|' .. run_id)
end
for _, item in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local evt = string.match(item, '^([^|]*)')
  redis.call('DEL', 'relay:dlv:' .. evt .. ':' .. sub)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[2]))
redis.call('SREM', KEYS[6], sub)
return 1
"""
