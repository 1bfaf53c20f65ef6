"""Lua scripts for every state change that must be atomic.

Each script is the whole of one decision, so a SIGKILL lands either before it or after it, never
in the middle: that is how "nothing lost" and "one event per transition" hold without locks.
Keys outside KEYS are built from the `relay:` prefix inside the scripts, which is fine on a single
Redis/Valkey or Sentinel primary (the supported deployments) and not meant for Redis Cluster.
"""

from __future__ import annotations

from relay.store.lifecycle import PRELUDE as _LC

# KEYS: run, tenant_runs, due, idem ('' to skip), upstream ('' to skip), callback sub ('' to skip),
#       tenant_active ('' to skip: not counted against RELAY_MAX_ACTIVE_RUNS)
# ARGV: run_id, now, due_at, body_hash, idem_ttl, max_active, n_sub_fields,
#       sub field/value pairs..., run field/value pairs...
# Returns {outcome, run id}: created | existing | conflict | tracked | quota (nothing written).
# The run's callback subscription is written in the same step, so no crash leaves a callback
# subscription without its run, or a run whose callback is never sent.
# The active set is the quota's count: the run joins it here; when the count reaches the limit,
# the members whose run is no longer starting/tracking (ended, stopped, erased) leave it first, so
# the set is bounded by the limit and the check is exact at the moment it matters.
CREATE_RUN = (
    _LC
    + """
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
if KEYS[7] ~= '' then
  local limit = tonumber(ARGV[6])
  if redis.call('SCARD', KEYS[7]) >= limit then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[7])) do
      local st = redis.call('HGET', 'relay:run:' .. id, 'state')
      if st ~= 'starting' and st ~= 'tracking' then redis.call('SREM', KEYS[7], id) end
    end
    if redis.call('SCARD', KEYS[7]) >= limit then return {'quota', ''} end
  end
  redis.call('SADD', KEYS[7], ARGV[1])
end
local nsub = tonumber(ARGV[7])
local fields = {}
for i = 8 + 2 * nsub, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if KEYS[6] ~= '' and nsub > 0 then
  local sub = {}
  for i = 8, 7 + 2 * nsub do sub[#sub + 1] = ARGV[i] end
  redis.call('HSET', KEYS[6], unpack(sub))
end
if KEYS[4] ~= '' then
  redis.call('HSET', KEYS[4], 'body_hash', ARGV[4], 'run_id', ARGV[1])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
if KEYS[5] ~= '' then redis.call('SET', KEYS[5], ARGV[1]) end
-- lifecycle (relay/store/lifecycle.py): the listing indexes by provider and status.
lc_index(ARGV[1])
return {'created', ARGV[1]}
"""
)

# Lua shared by the scripts that hold or release a lease. Time is the server's (TIME), never a
# worker's clock: a worker whose clock is off neither steals leases early nor hands them out
# already expired. A claim's token is its lease deadline as the server wrote it, kept in the due
# set's lease hash (`<due>:leases`) while the member is held; every script that finishes, retries
# or reschedules a member checks it (an empty token skips the check: a job run by hand, not
# claimed). Releasing deletes the hash entry and the member's failure count, so both end with the
# lease (a member removed from the due set by someone else loses its entry at the holder's
# release, or at DELETE of the run).
LEASE_LIB = """
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function lease_held(leases, member, token)
  if leases == '' or token == '' then return true end
  return redis.call('HGET', leases, member) == token
end
local function release(due, leases, member, at)
  if leases ~= '' then
    redis.call('HDEL', leases, member)
    redis.call('HDEL', leases .. ':fails', member)
  end
  if at == nil then redis.call('ZREM', due, member)
  else redis.call('ZADD', due, 'XX', at, member) end
end
"""

# Claim due members by pushing their score to a lease deadline; an unfinished claim (its worker
# died) becomes due again when the lease passes. Returns {server_now, member, token, fails, ...}:
# the claim time is the job's observation time (see RECORD_EVENT).
# KEYS: due, leases. ARGV: lease seconds, limit.
CLAIM = (
    LEASE_LIB
    + """
local now = server_now()
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {string.format('%.6f', now)}
local deadline = now + tonumber(ARGV[1])
for _, m in ipairs(items) do
  redis.call('ZADD', KEYS[1], deadline, m)
  local token = redis.call('ZSCORE', KEYS[1], m)
  redis.call('HSET', KEYS[2], m, token)
  out[#out + 1] = m
  out[#out + 1] = token
  out[#out + 1] = redis.call('HGET', KEYS[2] .. ':fails', m) or '0'
end
return out
"""
)

# Release a held member: reschedule it `delay` seconds from now (server time), or remove it
# (delay '') — only if the lease is still this claim's, and only if the member is still in the
# due set (XX: a run stopped meanwhile stays stopped). Optional run fields are written with it
# (only to a record that still exists: a deleted run or watch is never brought back as a stub),
# and a poll asked for again while it was held (`poll_again`) is due at once.
# KEYS: due, leases, run ('' for none). ARGV: member, token, delay, observed_at, field, value...
# Returns 1, 0 (the lease was lost: nothing written) or -1 (an older observation: nothing written
# to the run, the member released).
RELEASE = (
    LEASE_LIB
    + """
if not lease_held(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
local now = server_now()
local delay = ARGV[3]
local written = 1
if KEYS[3] ~= '' then
  local seen = tonumber(redis.call('HGET', KEYS[3], 'observed_at') or '0')
  local obs = tonumber(ARGV[4]) or 0
  if obs > 0 and obs < seen then written = -1
  elseif #ARGV > 4 and redis.call('EXISTS', KEYS[3]) == 1 then
    local fields = {}
    for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
    if obs > 0 then fields[#fields + 1] = 'observed_at'; fields[#fields + 1] = ARGV[4] end
    redis.call('HSET', KEYS[3], unpack(fields))
  end
  if delay ~= '' and redis.call('HGET', KEYS[3], 'poll_again') then
    redis.call('HDEL', KEYS[3], 'poll_again')
    delay = '0'
  end
end
if delay == '' then release(KEYS[1], KEYS[2], ARGV[1], nil)
else release(KEYS[1], KEYS[2], ARGV[1], now + tonumber(delay)) end
return written
"""
)

# A held member's job raised. Count it; after `limit` consecutive failures the member is set
# aside in the poison set (out of the schedule, not retried every lease forever) with the error
# on its run, until a refresh puts it back. Below the limit the member keeps its lease and comes
# back when the lease passes. The poison set is trimmed to `keep` seconds (RELAY_RETENTION).
# KEYS: due, leases, poison, run ('' for none). ARGV: member, token, limit, error, keep
# Returns the failure count, or 0 when the lease was lost.
FAIL = (
    LEASE_LIB
    + """
if not lease_held(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
local fails = redis.call('HINCRBY', KEYS[2] .. ':fails', ARGV[1], 1)
if fails < tonumber(ARGV[3]) then return fails end
local now = server_now()
release(KEYS[1], KEYS[2], ARGV[1], nil)
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[5]))
if KEYS[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], 'job_error', ARGV[4])
end
return fails
"""
)

# Count one more of something on a held member's record (a poll made, a vendor error in a row),
# only while the lease is still this claim's and the record exists: a job whose run was stopped or
# deleted meanwhile (DELETE drops the lease entry) writes nothing.
# KEYS: leases, record. ARGV: member, token, field. Returns the new count, or false (lease lost).
BUMP = (
    LEASE_LIB
    + """
if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
return redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
"""
)

# POST /v1/runs/{id}/refresh: poll now, but never start a second poll of a run already being
# polled: a held run is marked `poll_again` (its poll reschedules itself at once when it ends);
# a run set aside as poison is put back. KEYS: run, due_poll, leases, poison. ARGV: run_id
# Returns 'not_tracking', 'queued' (held: after the current poll) or 'scheduled'.
REFRESH_POLL = (
    LEASE_LIB
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'tracking' then return 'not_tracking' end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'poll_again', '1')
  return 'queued'
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[3] .. ':fails', ARGV[1])
redis.call('HDEL', KEYS[1], 'job_error')
redis.call('ZADD', KEYS[2], server_now(), ARGV[1])
return 'scheduled'
"""
)

# Record a transition, all of its delivery work and all the work it causes, in one step: the
# event, the run's new fields, one lane entry per subscriber, the upstream index, and the run's
# schedule (drop the start entry, set or drop the next poll). A duplicate (the event exists: a
# status seen again, a run tracked again, a vendor run shared by two relay runs) still moves the
# run — fields and schedule — and only makes no event and no delivery. An observation made before
# the run's last recorded one (observed_at, server time of the claim that made it) changes nothing.
# A subscription deleted since it was matched gets nothing; a disabled one gets its lane filled but
# not scheduled (parked): enabling it schedules every lane in its pairs set. A new event is also
# appended to the tenant's pull log (GET /v1/events, relay/pull.py).
# KEYS: run, event, run_events, due_deliver, held_due ('' none), held_leases ('' none),
#       next_due ('' none), upstream ('' none), tenant_events
# ARGV: event_id, expected_sequence, now, body, type, status, n_run_fields, n_subs,
#       token, observed_at ('' none), next_delay ('' none), run_id,
#       run field/value pairs..., sub ids..., retention (last: the pull log's, seconds)
# Returns 'ok', 'dup', 'gone' (run deleted or stopped), 'stale' (sequence moved: re-read, retry),
# 'old' (an older observation) or 'lost' (the lease is another worker's now).
RECORD_EVENT = (
    _LC
    + LEASE_LIB
    + """
local run_id = ARGV[12]
if not lease_held(KEYS[6], run_id, ARGV[9]) then return 'lost' end
-- A deleted or stopped run records nothing more: a poll in flight when DELETE landed must not
-- write the run back to life.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'stopped' then return 'gone' end
local obs = tonumber(ARGV[10]) or 0
if obs > 0 and obs < tonumber(redis.call('HGET', KEYS[1], 'observed_at') or '0') then
  return 'old'
end
local dup = redis.call('EXISTS', KEYS[2]) == 1
local nf = tonumber(ARGV[7])
local ns = tonumber(ARGV[8])
local fields = {'updated_at', ARGV[3]}
for i = 13, 12 + 2 * nf do fields[#fields + 1] = ARGV[i] end
if obs > 0 then fields[#fields + 1] = 'observed_at'; fields[#fields + 1] = ARGV[10] end
if not dup then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'sequence') or '0')
  if seq + 1 ~= tonumber(ARGV[2]) then return 'stale' end
  local subs = {}
  local enabled = {}
  for i = 13 + 2 * nf, 12 + 2 * nf + ns do
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
  fields[#fields + 1] = 'sequence'; fields[#fields + 1] = ARGV[2]
  local now = server_now()
  for _, sub in ipairs(subs) do
    redis.call('RPUSH', 'relay:lane:' .. sub .. ':' .. run_id, ARGV[1])
    redis.call('HSET', 'relay:dlv:' .. ARGV[1] .. ':' .. sub, 'state', 'pending', 'attempts', 0,
      'updated_at', ARGV[3])
    redis.call('SADD', 'relay:sub:' .. sub .. ':pairs', run_id)
    if enabled[sub] then redis.call('ZADD', KEYS[4], 'NX', now, sub .. '|' .. run_id) end
  end
  -- The pull log: the event id on the tenant's stream, trimmed by MINID to the retention (Redis
  -- time, as the stream ids are) and expiring a retention after its newest entry; then one
  -- wake-up for the api processes' long-polls.
  local keep = tonumber(ARGV[#ARGV])
  local oldest = math.floor((now - keep) * 1000)
  redis.call('XADD', KEYS[9], 'MINID', '~', oldest, '*', 'e', ARGV[1])
  redis.call('EXPIRE', KEYS[9], math.ceil(keep))
  redis.call('PUBLISH', 'relay:events:wake', KEYS[9])
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
elseif KEYS[5] ~= '' then
  redis.call('HDEL', KEYS[1], 'poll_again')
end
-- lifecycle (relay/store/lifecycle.py): the listing indexes follow the new status and state; an
-- ended run with nothing to deliver starts retention.
lc_index(run_id)
lc_settle(run_id)
if dup then return 'dup' end
return 'ok'
"""
)

# An event back at the end of its lane with a FRESH retry schedule (ENQUEUE_LANE, RECOVER_DEAD):
# the delivery is pending with 0 attempts (the attempt log, a separate list, keeps every earlier
# attempt), the lane is listed and scheduled (NX: one already scheduled or held keeps its time
# and lease), and an ended run's keys outlive this delivery (lifecycle `lc_reopen`).
_REQUEUE = """
local function requeue(lane, dlv, due, pairs, event_id, now, pair, run_id)
  redis.call('RPUSH', lane, event_id)
  redis.call('HSET', dlv, 'state', 'pending', 'attempts', 0, 'next_at', '', 'updated_at', now)
  redis.call('SADD', pairs, run_id)
  redis.call('ZADD', due, 'NX', now, pair)
  lc_reopen(run_id)
end
"""


# Put one event (back) on a lane with a FRESH retry schedule: redeliver and ping. The delivery's
# attempt count for the schedule goes back to 0 (the attempt log, a separate list, keeps every
# earlier attempt), so it gets the whole retry schedule again and Retry-After is read on its
# first failure. A dead letter of this event for this subscription leaves the dead index in the
# same step, so a later recover cannot send it a second time.
# KEYS: lane, dlv, due_deliver, pairs, dead_index
# ARGV: event_id, now, pair, run_id
# Returns 1.
ENQUEUE_LANE = (
    _LC
    + _REQUEUE
    + """
redis.call('ZREM', KEYS[5], ARGV[1] .. '|' .. ARGV[4])
requeue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""
)

# Recover ONE dead letter, as one step: only if it is still in the dead index (so two recovers
# at once queue it once, and one that died again meanwhile is taken from the index it is in),
# take it out of the index, reset the delivery to pending with a fresh retry schedule (attempts
# 0; the attempt log keeps the history), append it to its lane and schedule the lane.
# KEYS: dead_index, lane, dlv, due_deliver, pairs
# ARGV: member ('<event_id>|<run_id>'), event_id, now, pair, run_id
# Returns 1 (queued again) or 0 (no longer dead-lettered: someone else recovered it).
RECOVER_DEAD = (
    _LC
    + _REQUEUE
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
requeue(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"""
)

# The end of one listing of a watched agent (workers/watch.py), only if the watch still exists:
# a DELETE during the listing must not be written back over. Marks the new upstream runs seen,
# records the listing and schedules the next one (XX: a deleted watch is not re-added).
# KEYS: watch, watch_seen, due_watch, leases
# ARGV: watch_id, now, runs_seen, interval, token, upstream run ids...
# Returns 1 (recorded; the next listing is due `interval` seconds from now, server time) or 0 (the
# watch is gone, or the lease is another worker's now: nothing written).
FINISH_LISTING = (
    LEASE_LIB
    + """
if not lease_held(KEYS[4], ARGV[1], ARGV[5]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  release(KEYS[3], KEYS[4], ARGV[1], nil)
  return 0
end
for i = 6, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[1], 'baselined', '1', 'last_listed_at', ARGV[2], 'last_error', '',
  'runs_seen', ARGV[3])
release(KEYS[3], KEYS[4], ARGV[1], server_now() + tonumber(ARGV[4]))
return 1
"""
)

# Everything a delivery needs to start, in one round trip: the lane's head event id, its body,
# this subscriber's attempt count for it, the subscription hash, and whether the lane was woken
# for a freed delivery slot (WAKE_LIB: its waiting score, -1 when woken). Read-only.
# KEYS: lane, sub, waiting. ARGV: sub_id, lane member.
# Returns {head|nil, body|nil, attempts|nil, {sub field, value...}, waiting score|nil}
LANE_HEAD = """
local sub = redis.call('HGETALL', KEYS[2])
local head = redis.call('LINDEX', KEYS[1], 0)
local woken = redis.call('ZSCORE', KEYS[3], ARGV[2])
if not head then return {false, false, false, sub, woken} end
local body = redis.call('HGET', 'relay:event:' .. head, 'body')
local attempts = redis.call('HGET', 'relay:dlv:' .. head .. ':' .. ARGV[1], 'attempts')
return {head, body, attempts, sub, woken}
"""


# A subscription's waiting lanes (workers/deliver.py): a lane claimed while its worker already
# has RELAY_DELIVERY_PER_SUBSCRIPTION deliveries to that subscription in flight does not come
# back every fraction of a second to check again (thousands of such lanes, claimed and put back
# all the time, were what delayed every other subscriber: bench/fairness.py). It waits in
# `waiting` (zset lane -> since when, FIFO) with a safety-net time on the schedule, and each
# delivery to the subscription that ends (FINISH_HEAD, RETRY_HEAD) wakes the first one: due now,
# its score -1, which tells the worker that claims it that it takes the slot just freed. Entries
# leave when their lane's delivery ends or their lane is found gone; the zset goes with its
# subscription (DELETE_SUB) and expires a day after its last wait in any case.
WAKE_LIB = """
local function wake_one(due, leases, waiting, now)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', waiting, 0, '+inf', 'LIMIT', 0, 8)) do
    if not redis.call('ZSCORE', due, m) then
      redis.call('ZREM', waiting, m)
    elseif redis.call('HEXISTS', leases, m) == 0 then
      redis.call('ZADD', waiting, 'XX', -1, m)
      redis.call('ZADD', due, 'XX', now, m)
      return
    end
  end
end
"""


# A lane whose worker is at its cap for the subscription waits (WAKE_LIB). KEYS: due_deliver,
# leases, waiting. ARGV: lane member, token, safety-net delay (s).
WAIT_LANE = (
    LEASE_LIB
    + WAKE_LIB
    + """
if not lease_held(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
local now = server_now()
release(KEYS[1], KEYS[2], ARGV[1], now + tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], 'NX', now, ARGV[1])
redis.call('EXPIRE', KEYS[3], 86400)
return 1
"""
)


# A delivery ended in the worker while a lane was being put to wait: wake one (WAKE_LIB).
# KEYS: due_deliver, leases, waiting.
WAKE_LANE = (
    LEASE_LIB
    + WAKE_LIB
    + """
wake_one(KEYS[1], KEYS[2], KEYS[3], server_now())
return 1
"""
)

# Finish the head of a lane: succeeded or dead-lettered. Only pops if the head is still this
# event and the lease still this claim's, so a late finisher whose lease was taken over cannot
# pop someone else's event. The lane is due again at once if it has more, else leaves the
# schedule. The subscription's first waiting lane is woken (WAKE_LIB).
# KEYS: lane, dlv, due_deliver, pairs, dead_index, leases, waiting
# ARGV: event_id, now, pair, run_id, state, attempts, code, error, dead ('1'/'0'), token
FINISH_HEAD = (
    _LC
    + LEASE_LIB
    + WAKE_LIB
    + """
if not lease_held(KEYS[6], ARGV[3], ARGV[10]) then return 0 end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('HSET', KEYS[2], 'state', ARGV[5], 'attempts', ARGV[6], 'last_code', ARGV[7],
  'last_error', ARGV[8], 'updated_at', ARGV[2], 'next_at', '')
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1] .. '|' .. ARGV[4])
end
if redis.call('LLEN', KEYS[1]) > 0 then
  release(KEYS[3], KEYS[6], ARGV[3], server_now())
else
  release(KEYS[3], KEYS[6], ARGV[3], nil)
  redis.call('SREM', KEYS[4], ARGV[4])
end
redis.call('ZREM', KEYS[7], ARGV[3])
wake_one(KEYS[3], KEYS[6], KEYS[7], server_now())
-- lifecycle (relay/store/lifecycle.py): the last pending delivery of an ended run starts retention.
lc_settle(ARGV[4])
return 1
"""
)

# Retry the head `delay` seconds from now (server time); the subscription's first waiting lane
# is woken (WAKE_LIB). KEYS: lane, dlv, due_deliver, leases, waiting
# ARGV: event_id, now, pair, attempts, code, error, next_at (shown), delay, token
RETRY_HEAD = (
    LEASE_LIB
    + WAKE_LIB
    + """
if not lease_held(KEYS[4], ARGV[3], ARGV[9]) then return 0 end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'state', 'retrying', 'attempts', ARGV[4], 'last_code', ARGV[5],
  'last_error', ARGV[6], 'updated_at', ARGV[2], 'next_at', ARGV[7])
local now = server_now()
release(KEYS[3], KEYS[4], ARGV[3], now + tonumber(ARGV[8]))
redis.call('ZREM', KEYS[5], ARGV[3])
wake_one(KEYS[3], KEYS[4], KEYS[5], now)
return 1
"""
)

# Drop a lane from the schedule if it is empty (no lost wake-up: the check and the removal are one
# step, and RECORD_EVENT adds with NX). KEYS: lane, due_deliver, pairs, leases.
# ARGV: pair, run_id, token
SETTLE_LANE = (
    LEASE_LIB
    + """
if not lease_held(KEYS[4], ARGV[1], ARGV[3]) then return 0 end
if redis.call('LLEN', KEYS[1]) == 0 then
  release(KEYS[2], KEYS[4], ARGV[1], nil)
  redis.call('SREM', KEYS[3], ARGV[2])
  return 1
end
release(KEYS[2], KEYS[4], ARGV[1], server_now())
return 0
"""
)

# Park a lane of a disabled subscription, unless it was re-enabled meanwhile.
# KEYS: sub, due_deliver, leases. ARGV: pair, token
PARK_LANE = (
    LEASE_LIB
    + """
if not lease_held(KEYS[3], ARGV[1], ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[1], 'enabled') ~= '1' then
  release(KEYS[2], KEYS[3], ARGV[1], nil)
  return 1
end
release(KEYS[2], KEYS[3], ARGV[1], server_now())
return 0
"""
)

# Send slots (GCRA), for the vendor budget per credential (relay/budget.py) and a subscription's
# rate_limit (relay/rate_limit.py): slots `interval` apart from the key's next free one, on the
# server's clock (a worker's skewed clock neither starves the others nor overspends). A caller
# whose slot is within max_wait takes it and sleeps until it. A caller further back *reserves*
# its slot under its holder name (a run, a lane, a watch) and is told to come back then: it keeps
# its place in line. Without reservations every deferred caller came back at the same free slot,
# one took it and the rest were claimed and put back again, every turn, and that churn in the
# shared pumps is what delayed other tenants (bench/fairness.py). A reservation missed by more
# than max_wait (its worker stalled) lapses and its holder queues again, so no burst after a
# stall is larger than max_wait's worth of slots.
# Tenants sharing one credential (the operator's account): reservations are kept per tenant, with
# a count per tenant, and a caller that must wait while another tenant holds more reservations
# than it does takes that tenant's first reservation past max_wait, whose holder gets the new slot
# at the end instead (it finds out when it comes back early, and waits on). So a tenant with a
# few runs is not queued behind another's thousands; the slots themselves, and so the budget, are
# the same: each call spends one, a swap only changes who has which.
# KEYS (named by relay/slots.py, the one caller): next free slot, the caller's tenant's
# reservations (zset holder -> slot), the counts (zset tenant -> reservations held).
# ARGV: interval (s), max_wait (s), holder, tenant, the prefix of every tenant's reservations
# key (the prefix followed by a tenant name is its key).
# Returns seconds: >= 0 the slot is taken (sleep that long, then send), < 0 come back after
# -value. Ends: the free-slot key expires a second after its slot; a reservation leaves when its
# holder takes it or lapses (trimmed here), a count with its tenant's last reservation, and both
# zsets expire a minute after the last slot they hold.
RESERVE_SLOT = (
    LEASE_LIB
    + """
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local holder, tenant = ARGV[3], ARGV[4]
local now = server_now()
local function count(t, key, by)
  if by == 0 then return end
  if tonumber(redis.call('ZINCRBY', KEYS[3], by, t)) <= 0 or redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[3], t)
  end
end
local held = redis.call('ZSCORE', KEYS[2], holder)
if held then
  held = tonumber(held)
  if held - now > max_wait then return tostring(now - held) end
  redis.call('ZREM', KEYS[2], holder)
  count(tenant, KEYS[2], -1)
  if held >= now - max_wait then return tostring(math.max(held - now, 0)) end
end
count(tenant, KEYS[2], -redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - max_wait))
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local wait = slot - now
local nxt = slot + interval
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
if wait <= max_wait then return tostring(wait) end
local ttl = math.ceil(wait * 1000) + 60000
local mine = redis.call('ZCARD', KEYS[2])
local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if top[1] and top[1] ~= tenant and tonumber(top[2]) > mine + 1 then
  local other = ARGV[5] .. top[1]
  count(top[1], other, -redis.call('ZREMRANGEBYSCORE', other, '-inf', now - max_wait))
  local first = redis.call('ZRANGEBYSCORE', other, '(' .. (now + max_wait), '+inf',
    'WITHSCORES', 'LIMIT', 0, 1)
  if first[1] then
    redis.call('ZADD', other, slot, first[1])
    redis.call('PEXPIRE', other, ttl)
    slot = tonumber(first[2])
    wait = slot - now
  end
end
redis.call('ZADD', KEYS[2], slot, holder)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZINCRBY', KEYS[3], 1, tenant)
redis.call('PEXPIRE', KEYS[3], ttl)
return tostring(-wait)
"""
)

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
RESUME_RUN = (
    _LC
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'tracking_failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'tracking', 'error', '', 'terminal', '0',
  'tracking_since', ARGV[2], 'updated_at', ARGV[2], 'errors', '0', 'not_found', '0',
  'unauthorized', '0', 'unauthorized_since', '', 'poll_interval', '0')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
-- lifecycle (relay/store/lifecycle.py): tracked again, so no longer ended: the listing indexes
-- follow the state, and a retention clock already started stops.
lc_index(ARGV[1])
lc_reopen(ARGV[1])
return 1
"""
)

# Remove a subscription with everything queued for it: its lanes (parked ones included), the
# delivery records of the events still on them and of its dead letters, its schedule entries.
# The attempt log is left to expire.
# KEYS: sub, pairs, due_deliver, dead, attempts, tenant_subs, waiting lanes (WAKE_LIB)
# ARGV: sub_id, attempts_ttl
DELETE_SUB = (
    _LC
    + """
local sub = ARGV[1]
-- lifecycle (relay/store/lifecycle.py): the runs with lanes here, settled below.
local lc_runs = redis.call('SMEMBERS', KEYS[2])
for _, run_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local lane = 'relay:lane:' .. sub .. ':' .. run_id
  for _, evt in ipairs(redis.call('LRANGE', lane, 0, -1)) do
    redis.call('DEL', 'relay:dlv:' .. evt .. ':' .. sub)
  end
  redis.call('DEL', lane)
  redis.call('ZREM', KEYS[3], sub .. '|' .. run_id)
  redis.call('HDEL', KEYS[3] .. ':leases', sub .. '|' .. run_id)
  redis.call('HDEL', KEYS[3] .. ':leases:fails', sub .. '|' .. run_id)
end
for _, item in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local evt = string.match(item, '^([^|]*)')
  redis.call('DEL', 'relay:dlv:' .. evt .. ':' .. sub)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[7])
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[2]))
redis.call('SREM', KEYS[6], sub)
-- lifecycle (relay/store/lifecycle.py): runs that waited only for this subscription's
-- deliveries (now moot) start retention.
for _, run_id in ipairs(lc_runs) do lc_settle(run_id) end
return 1
"""
)

# Scripts that only read: the crash-point harness does not count them as writes.
READ_ONLY = (LANE_HEAD,)
