"""Where a run's keys die (DESIGN.md invariant 8): retention after the run ended, erase at once.

The clock starts in the script that makes it true: a run has ended (completed, start_failed,
tracking_failed, stopped) AND none of its deliveries is still pending. RECORD_EVENT (the terminal
transition) and FINISH_HEAD (the last delivery of a lane) call `lc_settle` from the Lua prelude
below, as do stop (DELETE) and deleting a subscription (whose lanes are then moot). From then on:

- every data key of the run (events list, event hashes with their bodies and snapshots,
  delivery records, the callback subscription with its attempts/dead/pairs) carries PEXPIREAT
  `retain_until`: Redis deletes them itself, exactly on time;
- the run hash carries `retain_until` (readers treat the run as gone from then) and expires a
  grace later, so the sweep can still read what to unindex;
- `relay:retention` (zset, score = retain_until) drives the sweep (SWEEP_RUN, run by every
  worker's sweeper loop), which removes what cannot expire per member: the tenant's run indexes
  (by provider and status too), the due sets, the subscription's dead letters and attempt-log
  entries and the tenant's notices older than the retention, the watch's seen-set member; it
  turns the upstream de-duplication key of an agent's run into a tombstone ('tomb',
  `RELAY_TOMBSTONE_TTL`: a watch listing the agent must not track it again), deletes any other
  run's, and deletes the run hash.

A delivery queued again for an ended run (redeliver, recover) calls `lc_reopen`: the keys lose
their expiry until that delivery settles too, so retention never cuts a pending delivery short.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from relay import keys

RETENTION = keys.P + "retention"
TOMB = "tomb"
#: How long the run hash outlives its data keys, so a late sweep still knows what to unindex.
GRACE_MS = 24 * 3600 * 1000
DEFAULT_RETENTION = 30 * 86400

# Defines lc_now_ms, lc_keys, lc_settled, lc_settle, lc_reopen. Prepended to the scripts that
# call them (relay/store/scripts.py); each call is one clearly marked line there.
PRELUDE = (
    """
local LC_ENDED = {completed = true, start_failed = true, tracking_failed = true, stopped = true}
-- Listing indexes (relay/store/runs.py list_runs): per tenant, zsets scored by created_at, by
-- provider (p:), by status or state (s:), and by both (ps:). The values indexed are kept on the
-- run hash (ix_status, ix_state) so a change moves the entry and the sweep knows what to remove.
local function lc_ix(tenant, kind, a, b)
  local key = 'relay:tenant:' .. tenant .. ':runs:' .. kind .. ':' .. a
  if b then key = key .. ':' .. b end
  return key
end
local function lc_index(run_id)
  local rk = 'relay:run:' .. run_id
  local f = redis.call('HMGET', rk, 'tenant', 'provider', 'status', 'state', 'created_at',
    'ix_status', 'ix_state')
  if not f[1] then return end
  local t, p, score = f[1], f[2], f[5]
  if not f[6] and not f[7] then redis.call('ZADD', lc_ix(t, 'p', p), score, run_id) end
  local now_vals = {f[3] or '', f[4] or ''}
  local old_vals = {f[6] or '', f[7] or ''}
  for i = 1, 2 do
    if now_vals[i] ~= old_vals[i] then
      if old_vals[i] ~= '' and old_vals[i] ~= now_vals[3 - i] then
        redis.call('ZREM', lc_ix(t, 's', old_vals[i]), run_id)
        redis.call('ZREM', lc_ix(t, 'ps', p, old_vals[i]), run_id)
      end
      if now_vals[i] ~= '' then
        redis.call('ZADD', lc_ix(t, 's', now_vals[i]), score, run_id)
        redis.call('ZADD', lc_ix(t, 'ps', p, now_vals[i]), score, run_id)
      end
    end
  end
  redis.call('HSET', rk, 'ix_status', now_vals[1], 'ix_state', now_vals[2])
  -- The quota's count of active runs (CREATE_RUN): a run leaves it when it stops being active.
  if f[4] ~= 'starting' and f[4] ~= 'tracking' then
    redis.call('SREM', 'relay:tenant:' .. t .. ':active', run_id)
  end
end
local function lc_unindex(run_id, tenant, provider, status, state)
  redis.call('ZREM', 'relay:tenant:' .. tenant .. ':runs', run_id)
  redis.call('SREM', 'relay:tenant:' .. tenant .. ':active', run_id)
  redis.call('ZREM', lc_ix(tenant, 'p', provider), run_id)
  for _, v in ipairs({status or '', state or ''}) do
    if v ~= '' then
      redis.call('ZREM', lc_ix(tenant, 's', v), run_id)
      redis.call('ZREM', lc_ix(tenant, 'ps', provider, v), run_id)
    end
  end
end
local function lc_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Every data key of a run (not its hash): what expires with it and what erase deletes.
local function lc_keys(run_id)
  local rk = 'relay:run:' .. run_id
  local out = {rk .. ':events'}
  for _, e in ipairs(redis.call('LRANGE', rk .. ':events', 0, -1)) do
    out[#out + 1] = 'relay:event:' .. e
    local subs = redis.call('HGET', 'relay:event:' .. e, 'subs') or ''
    for sub in string.gmatch(subs, '[^,]+') do
      out[#out + 1] = 'relay:dlv:' .. e .. ':' .. sub
    end
  end
  local cb = redis.call('HGET', rk, 'callback_sub')
  if cb then
    for _, s in ipairs({'', ':attempts', ':dead', ':pairs'}) do
      out[#out + 1] = 'relay:sub:' .. cb .. s
    end
  end
  return out
end
-- The subscriptions the run's events went to (comma-separated, each once).
local function lc_subs(run_id)
  local seen, out = {}, {}
  for _, e in ipairs(redis.call('LRANGE', 'relay:run:' .. run_id .. ':events', 0, -1)) do
    local subs = redis.call('HGET', 'relay:event:' .. e, 'subs') or ''
    for sub in string.gmatch(subs, '[^,]+') do
      if not seen[sub] then seen[sub] = true; out[#out + 1] = sub end
    end
  end
  return table.concat(out, ',')
end
-- No delivery of the run is pending or retrying for a subscription that still exists (a parked
-- lane of a disabled subscription is pending: it waits for the subscription to come back).
local function lc_settled(run_id)
  for _, e in ipairs(redis.call('LRANGE', 'relay:run:' .. run_id .. ':events', 0, -1)) do
    local subs = redis.call('HGET', 'relay:event:' .. e, 'subs') or ''
    for sub in string.gmatch(subs, '[^,]+') do
      local st = redis.call('HGET', 'relay:dlv:' .. e .. ':' .. sub, 'state')
      if (st == 'pending' or st == 'retrying') and redis.call('EXISTS', 'relay:sub:' .. sub) == 1
      then return false end
    end
  end
  return true
end
-- The upstream de-duplication key of a run that is gone. A run of an agent (the only kind a
-- watch lists) leaves a tombstone ('tomb', ttl ms) so the watch does not track it again; any
-- other run's key just goes (tracking its upstream run again makes a new run).
local function lc_bury(run_id, tenant, provider, agent_id, upstream_run_id, ttl)
  local up = 'relay:upstream:' .. tenant .. ':' .. provider .. ':' .. (agent_id or '') .. ':'
    .. upstream_run_id
  if redis.call('GET', up) ~= run_id then return end
  if agent_id and agent_id ~= '' then
    redis.call('SET', up, 'tomb', 'PX', ttl)
  else
    redis.call('DEL', up)
  end
end
-- Start the run's retention clock if it ended and its deliveries settled. Returns 1 if started.
local function lc_settle(run_id)
  local rk = 'relay:run:' .. run_id
  local f = redis.call('HMGET', rk, 'state', 'retention', 'retain_until')
  if not f[1] or not LC_ENDED[f[1]] or f[3] or not lc_settled(run_id) then return 0 end
  local ret_ms = math.floor(tonumber(f[2] or '"""
    + str(DEFAULT_RETENTION)
    + """') * 1000)
  local until_ms = lc_now_ms() + ret_ms
  for _, k in ipairs(lc_keys(run_id)) do redis.call('PEXPIREAT', k, until_ms) end
  redis.call('HSET', rk, 'retain_until', string.format('%.3f', until_ms / 1000),
    'subs_seen', lc_subs(run_id))
  redis.call('PEXPIREAT', rk, until_ms + """
    + str(GRACE_MS)
    + """)
  redis.call('ZADD', 'relay:retention', string.format('%.3f', until_ms / 1000), run_id)
  return 1
end
-- A delivery of an ended run was queued again: its keys must outlive it (lc_settle re-arms).
local function lc_reopen(run_id)
  local rk = 'relay:run:' .. run_id
  if not redis.call('HGET', rk, 'retain_until') then return 0 end
  for _, k in ipairs(lc_keys(run_id)) do redis.call('PERSIST', k) end
  redis.call('PERSIST', rk)
  redis.call('HDEL', rk, 'retain_until')
  redis.call('ZREM', 'relay:retention', run_id)
  return 1
end
"""
)

# Settle one run now (stop, a deleted subscription). ARGV: run_id. Returns 1 if the clock started.
SETTLE_RUN = PRELUDE + "lc_index(ARGV[1])\nreturn lc_settle(ARGV[1])\n"

# Trim a list of JSON records (newest first, each with "at", unix seconds) to those newer than
# `cutoff`, from the oldest end.
_TRIM_OLD = """
local function lc_trim_old(key, cutoff)
  for _ = 1, 10000 do
    local last = redis.call('LINDEX', key, -1)
    if not last then return end
    local ok, rec = pcall(cjson.decode, last)
    -- A record of another shape (no numeric "at") is kept: only what is known old goes.
    local at = ok and type(rec) == 'table' and tonumber(rec['at'])
    if not at or at >= cutoff then return end
    redis.call('RPOP', key)
  end
end
"""

# The sweep of one run whose retention passed: everything that cannot expire by itself.
# ARGV: run_id, (unused), tombstone ttl (ms); the time is Redis's.
# Returns 1 (swept) or 0 (not due, or reopened).
SWEEP_RUN = (
    PRELUDE
    + _TRIM_OLD
    + """
local now = lc_now_ms() / 1000
local score = redis.call('ZSCORE', 'relay:retention', ARGV[1])
if not score or tonumber(score) > now then return 0 end
redis.call('ZREM', 'relay:retention', ARGV[1])
local rk = 'relay:run:' .. ARGV[1]
local r = redis.call('HMGET', rk, 'tenant', 'provider', 'agent_id', 'upstream_run_id',
  'watch_id', 'subs_seen', 'retention', 'ix_status', 'ix_state')
for _, k in ipairs(lc_keys(ARGV[1])) do redis.call('DEL', k) end
redis.call('DEL', rk)
redis.call('ZREM', 'relay:due:poll', ARGV[1])
redis.call('ZREM', 'relay:due:start', ARGV[1])
if not r[1] then return 1 end
local tenant = r[1]
lc_unindex(ARGV[1], tenant, r[2], r[8], r[9])
local cutoff = now - tonumber(r[7] or '"""
    + str(DEFAULT_RETENTION)
    + """')
for sub in string.gmatch(r[6] or '', '[^,]+') do
  -- Dead letters and attempts older than the retention: this run's are among them.
  redis.call('ZREMRANGEBYSCORE', 'relay:sub:' .. sub .. ':dead', '-inf', '(' .. cutoff)
  lc_trim_old('relay:sub:' .. sub .. ':attempts', cutoff)
end
lc_trim_old('relay:tenant:' .. tenant .. ':notices', cutoff)
if r[4] and r[4] ~= '' then
  lc_bury(ARGV[1], tenant, r[2], r[3], r[4], ARGV[3])
  if r[5] and r[5] ~= '' then redis.call('SREM', 'relay:watch:' .. r[5] .. ':seen', r[4]) end
end
return 1
"""
)

# Erase one run now: every key and index entry, its lanes and dead letters included; the upstream
# key becomes a tombstone so a watch does not track it again. ARGV: run_id, tombstone ttl (ms).
# Returns 1 (erased) or 0 (no such run).
ERASE_RUN = (
    PRELUDE
    + """
local rk = 'relay:run:' .. ARGV[1]
local r = redis.call('HMGET', rk, 'tenant', 'provider', 'agent_id', 'upstream_run_id',
  'watch_id', 'ix_status', 'ix_state')
if not r[1] then return 0 end
local tenant = r[1]
for _, e in ipairs(redis.call('LRANGE', rk .. ':events', 0, -1)) do
  local subs = redis.call('HGET', 'relay:event:' .. e, 'subs') or ''
  for sub in string.gmatch(subs, '[^,]+') do
    redis.call('ZREM', 'relay:sub:' .. sub .. ':dead', e .. '|' .. ARGV[1])
    redis.call('DEL', 'relay:lane:' .. sub .. ':' .. ARGV[1])
    redis.call('ZREM', 'relay:due:deliver', sub .. '|' .. ARGV[1])
    redis.call('SREM', 'relay:sub:' .. sub .. ':pairs', ARGV[1])
  end
end
-- The attempt-log entries about the run (bounded by RELAY_ATTEMPT_RETENTION per subscription).
local mark = '"run_id":"' .. ARGV[1] .. '"'
for sub in string.gmatch(lc_subs(ARGV[1]), '[^,]+') do
  local log = 'relay:sub:' .. sub .. ':attempts'
  for _, row in ipairs(redis.call('LRANGE', log, 0, -1)) do
    if string.find(row, mark, 1, true) then redis.call('LREM', log, 0, row) end
  end
end
for _, k in ipairs(lc_keys(ARGV[1])) do redis.call('DEL', k) end
redis.call('DEL', rk)
redis.call('ZREM', 'relay:retention', ARGV[1])
redis.call('ZREM', 'relay:due:poll', ARGV[1])
redis.call('ZREM', 'relay:due:start', ARGV[1])
lc_unindex(ARGV[1], tenant, r[2], r[6], r[7])
if r[4] and r[4] ~= '' then lc_bury(ARGV[1], tenant, r[2], r[3], r[4], ARGV[2]) end
return 1
"""
)


def _script(r: aioredis.Redis, name: str, text: str) -> Any:
    cache: dict[str, Any] = getattr(r, "_relay_lifecycle", None) or {}
    if name not in cache:
        cache[name] = r.register_script(text)
        r._relay_lifecycle = cache  # type: ignore[attr-defined]
    return cache[name]


async def settle_run(r: aioredis.Redis, run_id: str) -> bool:
    """Start the run's retention clock if it ended and its deliveries settled."""
    return bool(await _script(r, "settle", SETTLE_RUN)(keys=[], args=[run_id]))


async def sweep_due(r: aioredis.Redis, now: float, tombstone_ttl: float, batch: int = 200) -> int:
    """Sweep up to `batch` runs whose retention passed; returns how many were swept."""
    due = await r.zrangebyscore(RETENTION, "-inf", now, start=0, num=batch)
    swept = 0
    script = _script(r, "sweep", SWEEP_RUN)
    for run_id in due:
        swept += int(await script(keys=[], args=[run_id, now, int(tombstone_ttl * 1000)]))
    return swept


async def erase_run(r: aioredis.Redis, run_id: str, tombstone_ttl: float) -> bool:
    """Delete the run and everything about it now; False if there was no such run."""
    script = _script(r, "erase", ERASE_RUN)
    return bool(await script(keys=[], args=[run_id, int(tombstone_ttl * 1000)]))


def retained(run: dict[str, str], now: float) -> bool:
    """False once the run's retention passed (its hash may outlive it until the sweep)."""
    until = run.get("retain_until")
    return not until or float(until) > now


# A worker's write to a run hash that must not bring an erased (or swept) run back: HSET or
# HINCRBY only if the hash still exists. KEYS: run. ARGV: command, its arguments after the key.
LIVE_WRITE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))
"""


def live_write(command: str, run_key: str, *args: Any) -> tuple[Any, ...]:
    """`command` on `run_key` as a queued command that writes only to a run that still exists."""
    return ("EVAL", LIVE_WRITE, 1, run_key, command, *args)


# The vendor accepted a start: note its upstream id on the run and claim the upstream key, only if
# the run still exists (an erase while the start call was out must not be written back).
# KEYS: run, upstream. ARGV: upstream_run_id, run_id. Returns 1, or 0 when the run is gone.
LIVE_STARTED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'upstream_run_id', ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


async def note_started(
    r: aioredis.Redis, run_id: str, upstream_key: str, upstream_run_id: str
) -> bool:
    """Record the upstream id of a started run; False if the run was erased meanwhile."""
    script = _script(r, "started", LIVE_STARTED)
    return bool(await script(keys=[keys.run(run_id), upstream_key], args=[upstream_run_id, run_id]))
