"""Subscriptions in Redis: who receives what, with which secrets."""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache
from typing import Any

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.autopipe import AutoPipeline
from relay.store.client import bind, dumps, loads

CALLBACK = "callback"


def new_sub_fields(
    *,
    sub_id: str,
    tenant: str,
    url: str,
    filter_: dict[str, Any],
    description: str,
    sealed_secret: str | None,
    now: float,
    run_id: str | None = None,
) -> dict[str, str]:
    fields = {
        "id": sub_id,
        "tenant": tenant,
        "url": url,
        "filter": dumps(filter_),
        "description": description,
        "enabled": "1",
        "created_at": repr(now),
        "updated_at": repr(now),
    }
    if sealed_secret is not None:
        fields["secrets"] = dumps([{"s": sealed_secret, "exp": None}])
    if run_id is not None:
        fields["kind"] = CALLBACK
        fields["run_id"] = run_id
    return fields


async def get_sub(r: aioredis.Redis, sub_id: str) -> dict[str, str] | None:
    data: dict[str, str] = await r.hgetall(keys.subscription(sub_id))
    return data or None


async def get_tenant_sub(r: aioredis.Redis, tenant: str, sub_id: str) -> dict[str, str] | None:
    sub = await get_sub(r, sub_id)
    if sub is None or sub.get("tenant") != tenant:
        return None
    return sub


def read_ids(auto: AutoPipeline, tenant: str) -> asyncio.Future[list[Any]]:
    """The tenant's set of subscription ids, its read sent now (`tenant_subs` takes the answer):
    a caller that will record a transition sends it with a command of its own before."""
    return auto.submit(("SMEMBERS", keys.tenant_subs(tenant)))


async def tenant_subs(
    r: aioredis.Redis,
    tenant: str,
    auto: AutoPipeline | None = None,
    ids_read: asyncio.Future[list[Any]] | None = None,
) -> list[dict[str, str]]:
    """The tenant's subscriptions: its set, then every hash in one pipeline. With `auto` (a
    worker's auto-pipeline) both reads go out with the other jobs' commands instead of taking a
    pooled connection each. `ids_read`: the set's read sent earlier (`read_ids`)."""
    auto = auto or AutoPipeline(r)
    if ids_read is None:
        ids_read = read_ids(auto, tenant)
    (found,) = await ids_read
    if isinstance(found, Exception):
        raise found
    ids = sorted(found)
    if not ids:
        return []
    rows = await auto.execute(*(("HGETALL", keys.subscription(i)) for i in ids))
    return [row for row in rows if row]


def matches(sub: dict[str, str], provider: str, event_type: str, status: str | None) -> bool:
    """Whether the filter takes this event. Enabled or not: a disabled subscription's events wait
    on its lanes, parked, until it is enabled again (or deleted, which drops them)."""
    flt = loads(sub.get("filter"), {})
    providers = flt.get("providers") or []
    statuses = flt.get("statuses") or []
    types = flt.get("event_types") or []
    if providers and provider not in providers:
        return False
    if types and event_type not in types:
        return False
    return not (statuses and event_type == "run.status_changed" and status not in statuses)


async def matching_subs(
    r: aioredis.Redis,
    run: dict[str, str],
    event_type: str,
    status: str | None,
    auto: AutoPipeline | None = None,
    ids_read: asyncio.Future[list[Any]] | None = None,
) -> list[str]:
    ids = [
        s["id"]
        for s in await tenant_subs(r, run["tenant"], auto, ids_read)
        if matches(s, run["provider"], event_type, status)
    ]
    # The run's callback subscriptions (its own, and those of runs that joined it); RECORD_EVENT
    # adds them itself too, and skips any whose hash is gone.
    ids += [cb for cb in (run.get("callback_sub") or "").split(",") if cb and cb not in ids]
    return ids


def active_secrets(sub: dict[str, str], now: float | None = None) -> list[str]:
    """Sealed secrets that still sign: the newest first, then any in its rotation grace."""
    now = time.time() if now is None else now
    return [sealed for sealed, exp in _sealed(sub.get("secrets") or "") if exp is None or exp > now]


@lru_cache(maxsize=1024)
def _sealed(raw: str) -> tuple[tuple[str, float | None], ...]:
    """The stored secrets list, parsed once per value: every delivery signs with it (bounded by
    the number of subscriptions a worker sends to, an LRU past that)."""
    return tuple(
        (item["s"], None if item.get("exp") is None else float(item["exp"]))
        for item in loads(raw, [])
    )


def rotated_secrets(sub: dict[str, str], sealed_new: str, now: float, grace: float) -> str:
    kept = [
        {"s": item["s"], "exp": item["exp"] if item.get("exp") is not None else now + grace}
        for item in loads(sub.get("secrets"), [])
        if item.get("exp") is None or float(item["exp"]) > now
    ]
    return dumps([{"s": sealed_new, "exp": None}, *kept][:3])


ATTEMPTS_AFTER_DELETE = 7 * 86400


def purge_keys(sub_id: str) -> list[str]:
    """KEYS of lua/purge_sub.lua for a deleted subscription's purge chore (workers/chores.py)."""
    return [
        keys.sub_pairs(sub_id),
        keys.sub_dead(sub_id),
        keys.DUE_DELIVER,
        keys.DUE_CHORES,
        keys.leases(keys.DUE_CHORES),
    ]


def resume_keys(sub_id: str) -> list[str]:
    """KEYS of lua/resume_sub.lua for a re-enabled subscription's resume chore."""
    return [
        keys.subscription(sub_id),
        keys.sub_pairs(sub_id),
        keys.DUE_DELIVER,
        keys.DUE_CHORES,
        keys.leases(keys.DUE_CHORES),
        keys.CHORE_CURSORS,
    ]


async def delete_sub(r: aioredis.Redis, sub: dict[str, str]) -> None:
    """Remove a subscription: at once it leaves the API, the tenant's quota and every new
    recording (RECORD_EVENT fills no lane for a hash that is gone); everything still queued for
    it (its lanes, the parked ones of a disabled subscription too, their delivery records and its
    dead letters') is purged in the background in bounded batches (the `chores` pump,
    lua/purge_sub.lua). The attempt log expires a week later."""
    await bind(r).retire_sub(
        keys=[
            keys.subscription(sub["id"]),
            keys.tenant_subs(sub["tenant"]),
            keys.sub_waiting(sub["id"]),
            keys.sub_attempts(sub["id"]),
            keys.DUE_CHORES,
        ],
        args=[sub["id"], ATTEMPTS_AFTER_DELETE, f"purge|{sub['id']}"],
    )


async def resume_lanes(r: aioredis.Redis, sub_id: str, now: float) -> None:
    """Re-schedule every non-empty lane of a (re-)enabled subscription, in the background in
    bounded batches (the `chores` pump, lua/resume_sub.lua): the ones parked while it was
    disabled, and the ones RECORD_EVENT filled but did not schedule (it schedules a lane only for
    an enabled subscription). Call it after `enabled` is set, so a recording in between is either
    scheduled by RECORD_EVENT or has its lane in `pairs` by now. Each enable is its own chore, so
    a disable and enable during a resume never loses the second one."""
    await r.zadd(keys.DUE_CHORES, {f"resume|{sub_id}|{int(now * 1000)}": now}, nx=True)
