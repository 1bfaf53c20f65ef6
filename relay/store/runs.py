"""Runs in Redis: creation (with idempotency and tracking de-duplication), reads and paging."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind, dumps, loads
from relay.store.lifecycle import retained

IDEMPOTENCY_TTL = 24 * 3600

# The relay's own lifecycle of a run, beside the vendor's status.
STARTING, TRACKING, COMPLETED = "starting", "tracking", "completed"
START_FAILED, TRACKING_FAILED, STOPPED = "start_failed", "tracking_failed", "stopped"
#: A started run whose vendor run the tenant already tracked: it points at that run
#: (`joined_run_id`), which carries its callback (lua/includes/join.lua).
JOINED = "joined"
ACTIVE_STATES = frozenset({STARTING, TRACKING})


@dataclass(frozen=True)
class Created:
    outcome: str  # created | existing | conflict | input_conflict | tracked | quota
    run_id: str


def body_hash(body: Any) -> str:
    return hashlib.sha256(dumps(body).encode()).hexdigest()


async def create_run(
    r: aioredis.Redis,
    *,
    run: dict[str, str],
    due_key: str,
    due_at: float,
    idempotency_key: str | None,
    request_hash: str,
    upstream_key: str | None,
    callback_sub: dict[str, str] | None = None,
    max_active: int = 0,
    input_idempotency_key: str | None = None,
    watch_key: str | None = None,
    pipe: AutoPipeline | None = None,
) -> Created:
    """Create the run (and its callback subscription, if any) in one step, unless the
    Idempotency-Key, the client's `input.idempotencyKey` (`input_idempotency_key`, the same rules)
    or the upstream run already names one, or (`max_active` > 0: the run counts against the
    tenant's active-run quota) the tenant is at its quota, or (`watch_key`: a run a watch found)
    the watch is gone: a listing in flight when the watch was deleted, or its tenant erased,
    tracks nothing that would outlive it. With `pipe` (the api's auto-pipeline) the script goes
    out with the other requests' scripts of the same loop turn: one write and one read for all
    of them instead of a pool checkout and a round trip each."""
    sub_fields: list[str] = []
    for name, value in (callback_sub or {}).items():
        sub_fields += [name, value]
    fields: list[str] = []
    for name, value in run.items():
        fields += [name, value]
    script_keys = [
        keys.run(run["id"]),
        keys.tenant_runs(run["tenant"]),
        due_key,
        keys.idempotency(run["tenant"], idempotency_key) if idempotency_key else "",
        upstream_key or "",
        keys.subscription(callback_sub["id"]) if callback_sub else "",
        keys.tenant_active(run["tenant"]) if max_active > 0 else "",
        keys.input_idempotency(run["tenant"], run["provider"], input_idempotency_key)
        if input_idempotency_key
        else "",
        watch_key or "",
    ]
    args: list[Any] = [
        run["id"],
        run["created_at"],
        due_at,
        request_hash,
        IDEMPOTENCY_TTL,
        max_active,
        len(sub_fields) // 2,
        *sub_fields,
        *fields,
    ]
    script = bind(r).create_run
    if pipe is not None:
        result = await run_script(pipe, script, script_keys, args)
    else:
        result = await script(keys=script_keys, args=args)
    return Created(outcome=str(result[0]), run_id=str(result[1]))


async def get_run(r: aioredis.Redis, run_id: str) -> dict[str, str] | None:
    data: dict[str, str] = await r.hgetall(keys.run(run_id))
    return data or None


async def get_tenant_run(r: aioredis.Redis, tenant: str, run_id: str) -> dict[str, str] | None:
    run = await get_run(r, run_id)
    if run is None or run.get("tenant") != tenant or not retained(run, time.time()):
        return None
    return run


def public_run(run: dict[str, str]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "provider": run["provider"],
        "agent_id": run.get("agent_id") or None,
        "upstream_run_id": run.get("upstream_run_id") or None,
        "state": run.get("state"),
        "status": run.get("status") or None,
        "previous_status": run.get("previous_status") or None,
        "terminal": run.get("terminal") == "1",
        "sequence": int(run.get("sequence") or 0),
        "metadata": loads(run.get("metadata"), {}),
        "callback_url": run.get("callback_url") or None,
        "joined_run_id": run.get("joined_run_id") or None,
        "error": loads(run.get("error")),
        "polls": int(run.get("polls") or 0),
        # Its deliveries dead-lettered and retrying now (lua/includes/delivery_state.lua).
        "deliveries_dead": int(run.get("dlv_dead") or 0),
        "deliveries_failing": int(run.get("dlv_failing") or 0),
        # Set when the run's job failed RELAY_POISON_AFTER times in a row and was set aside
        # (workers/pump.py); a refresh clears it and tries again.
        "job_error": loads(run.get("job_error")),
        "created_at": float(run["created_at"]),
        "updated_at": float(run.get("updated_at") or run["created_at"]),
        "upstream": loads(run.get("snapshot")),
    }


def list_index(
    tenant: str, provider: str | None, status: str | None, delivery: str | None = None
) -> str:
    """The index a listing reads: the tenant's runs, or those of one provider and/or one status
    or state (kept by CREATE_RUN, RECORD_EVENT and stop through `lc_index`,
    relay/store/lua/includes/lifecycle.lua), or those with a delivery dead or retrying, of one
    provider or all (`delivery`, kept by the delivery scripts: lua/includes/delivery_state.lua;
    not combined with a status)."""
    if delivery and provider:
        return keys.runs_by_provider_delivery(tenant, provider, delivery)
    if delivery:
        return keys.runs_by_delivery(tenant, delivery)
    if provider and status:
        return keys.runs_by_provider_status(tenant, provider, status)
    if provider:
        return keys.runs_by_provider(tenant, provider)
    if status:
        return keys.runs_by_status(tenant, status)
    return keys.tenant_runs(tenant)


async def list_runs(
    r: aioredis.Redis,
    tenant: str,
    *,
    limit: int,
    cursor: str | None,
    provider: str | None,
    status: str | None,
    delivery: str | None = None,
) -> tuple[list[dict[str, str]], str | None]:
    """Newest first. The cursor is the last (score, id) seen, so paging is stable while runs are
    added. Filters choose an index holding only matching runs, so a page reads `limit` runs (plus
    the few sharing the cursor's score), not the tenant's whole history."""
    max_score = "+inf"
    after_id: str | None = None
    if cursor:
        score_s, _, after_id = cursor.partition(":")
        max_score = score_s
    out: list[dict[str, str]] = []
    index = list_index(tenant, provider, status, delivery)
    offset = 0
    now = time.time()
    while len(out) < limit:
        want = limit - len(out) + 1
        batch = await r.zrevrangebyscore(
            index, max_score, "-inf", start=offset, num=want, withscores=True
        )
        if not batch:
            return out, None
        offset += len(batch)
        pipe = r.pipeline(transaction=False)
        for run_id, _ in batch:
            pipe.hgetall(keys.run(run_id))
        runs = await pipe.execute()
        for (run_id, score), run in zip(batch, runs, strict=True):
            # Equal scores come in reverse member order, so "after the cursor" is a smaller id.
            if after_id is not None and float(score) == float(max_score) and run_id >= after_id:
                continue
            if not run or not retained(run, now):
                continue
            if len(out) == limit:
                return out, cursor_of(out[-1])
            out.append(run)
    return out, None


def cursor_of(run: dict[str, str]) -> str:
    return f"{float(run['created_at'])!r}:{run['id']}"


async def list_runs_newer(
    r: aioredis.Redis,
    tenant: str,
    *,
    limit: int,
    before: str,
    provider: str | None,
    status: str | None,
    delivery: str | None = None,
) -> tuple[list[dict[str, str]], bool]:
    """The `limit` runs just newer than the cursor `before` (a run's `cursor_of`), newest first,
    and whether there are newer ones still: the page before a `list_runs` page. Reads `limit`
    runs plus the few sharing the cursor's score, as `list_runs` does."""
    score_s, _, before_id = before.partition(":")
    index = list_index(tenant, provider, status, delivery)
    out: list[dict[str, str]] = []
    offset = 0
    now = time.time()
    while True:
        want = limit - len(out) + 1
        batch = await r.zrangebyscore(
            index, score_s, "+inf", start=offset, num=want, withscores=True
        )
        if not batch:
            out.reverse()
            return out, False
        offset += len(batch)
        pipe = r.pipeline(transaction=False)
        for run_id, _ in batch:
            pipe.hgetall(keys.run(run_id))
        runs = await pipe.execute()
        for (run_id, score), run in zip(batch, runs, strict=True):
            # Ascending, equal scores in member order: "newer than the cursor" is a larger id.
            if float(score) == float(score_s) and run_id <= before_id:
                continue
            if not run or not retained(run, now):
                continue
            if len(out) == limit:
                out.reverse()
                return out, True
            out.append(run)


async def count_runs(
    r: aioredis.Redis,
    tenant: str,
    provider: str | None,
    status: str | None,
    newer_than: str = "",
    delivery: str | None = None,
) -> tuple[int, int]:
    """(runs in the listing's index, how many of them are newer than the cursor `newer_than`):
    ZCARD and ZCOUNT, O(log n). Runs past their retention count until the sweep unindexes them."""
    index = list_index(tenant, provider, status, delivery)
    pipe = r.pipeline(transaction=False)
    pipe.zcard(index)
    if newer_than:
        pipe.zcount(index, "(" + newer_than.partition(":")[0], "+inf")
    found = await pipe.execute()
    return int(found[0]), int(found[1]) if newer_than else 0


async def refresh_poll(r: aioredis.Redis, run_id: str) -> str:
    """Poll a tracked run now — unless a poll of it is in flight, which then reschedules itself
    at once when it ends (never two polls of one run at a time). Puts a run set aside as poison
    back. Returns 'scheduled', 'queued' (after the poll in flight) or 'not_tracking'."""
    result = await bind(r).refresh_poll(
        keys=[
            keys.run(run_id),
            keys.DUE_POLL,
            keys.leases(keys.DUE_POLL),
            keys.poison(keys.DUE_POLL),
        ],
        args=[run_id],
    )
    return str(result)


async def stop_run(r: aioredis.Redis, run_id: str, now: float) -> bool:
    """Stop tracking in one script, from the run as it stands (lua/stop_run.lua); False if
    there is no such run."""
    schedule = []
    for due in (keys.DUE_START, keys.DUE_POLL):
        schedule += [due, keys.leases(due), keys.poison(due)]
    done = await bind(r).stop_run(keys=[keys.run(run_id), *schedule], args=[run_id, now])
    return bool(done)


def upstream_key(tenant: str, provider: str, agent_id: str, upstream_run_id: str) -> str:
    return keys.upstream(tenant, provider, agent_id, upstream_run_id)


async def resume_run(r: aioredis.Redis, run: dict[str, str], now: float) -> dict[str, str]:
    """Track a run that gave up (`tracking_failed`) again: state back to `tracking`, error and
    failure streaks cleared, the tracking window restarted from now, a poll due at once. One
    script, so a run that was not `tracking_failed` by then is left as it is. Returns the run
    as it now stands (the given one if it was not resumed, or is gone)."""
    if run.get("state") != TRACKING_FAILED:
        return run
    script = bind(r).resume_run
    resumed = await script(keys=[keys.run(run["id"]), keys.DUE_POLL], args=[run["id"], now])
    if not resumed:
        return run
    return await get_run(r, run["id"]) or run
