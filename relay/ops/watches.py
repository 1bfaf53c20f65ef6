"""Watches: follow an Autoposting agent so the runs it starts are tracked by themselves (the
`watch` job in workers/watch.py lists the agent's runs)."""

from __future__ import annotations

import time
from typing import Any

from relay.ids import new_id
from relay.ops import connections
from relay.ops.deps import Deps
from relay.ops.errors import NotFound
from relay.ops.inputs import WatchCreate
from relay.store import keys, leases
from relay.store.client import dumps, loads


def public(w: dict[str, str]) -> dict[str, Any]:
    return {
        "id": w["id"],
        "provider": w["provider"],
        "agent_id": w["agent_id"],
        "metadata": loads(w.get("metadata"), {}),
        "include_existing": w.get("include_existing") == "1",
        "created_at": float(w["created_at"]),
        "last_listed_at": float(w["last_listed_at"]) if w.get("last_listed_at") else None,
        "last_error": w.get("last_error") or None,
        # Its listing failed RELAY_POISON_AFTER times in a row and was set aside (workers/pump.py):
        # the error, until `refresh` brings it back.
        "set_aside": bool(w.get("job_error")),
        "job_error": loads(w.get("job_error")),
    }


async def create(deps: Deps, tenant: str, body: WatchCreate) -> dict[str, Any]:
    await connections.require(deps, tenant, body.provider)
    r = deps.redis
    now = time.time()
    watch_id = new_id("wch")
    fields = {
        "id": watch_id,
        "tenant": tenant,
        "provider": body.provider,
        "agent_id": body.agent_id,
        "metadata": dumps(body.metadata or {}),
        "include_existing": "1" if body.include_existing else "0",
        "created_at": repr(now),
    }
    pipe = r.pipeline(transaction=True)
    pipe.hset(keys.watch(watch_id), mapping=fields)
    pipe.sadd(keys.tenant_watches(tenant), watch_id)
    pipe.zadd(keys.DUE_WATCH, {watch_id: now})
    await pipe.execute()
    return public(fields)


async def _own(deps: Deps, tenant: str, watch_id: str) -> dict[str, str]:
    w: dict[str, str] = await deps.redis.hgetall(keys.watch(watch_id))
    if not w or w.get("tenant") != tenant:
        raise NotFound("watch")
    return w


async def list_all(deps: Deps, tenant: str) -> list[dict[str, Any]]:
    r = deps.redis
    ids = sorted(await r.smembers(keys.tenant_watches(tenant)))
    pipe = r.pipeline(transaction=False)
    for watch_id in ids:
        pipe.hgetall(keys.watch(watch_id))
    rows = await pipe.execute() if ids else []
    return [public(w) for w in rows if w]


async def get(deps: Deps, tenant: str, watch_id: str) -> dict[str, Any]:
    return public(await _own(deps, tenant, watch_id))


async def refresh(deps: Deps, tenant: str, watch_id: str) -> dict[str, Any]:
    """List the agent's runs now: a watch set aside after repeated failures is put back (its
    error cleared), any other is made due at once unless a listing is in flight."""
    await _own(deps, tenant, watch_id)
    r = deps.redis
    if not await leases.put_back(r, keys.DUE_WATCH, watch_id):
        held = await r.hexists(keys.leases(keys.DUE_WATCH), watch_id)
        if not held:
            await r.zadd(keys.DUE_WATCH, {watch_id: time.time()}, xx=True)
    return public(await _own(deps, tenant, watch_id))


async def delete(deps: Deps, tenant: str, watch_id: str) -> None:
    w = await _own(deps, tenant, watch_id)
    await remove(deps, w["tenant"], w["id"])


async def remove(deps: Deps, tenant: str, watch_id: str) -> None:
    """Where a watch's keys end (DELETE, erase-tenant): its hash, its seen set, its schedule,
    set-aside and lease entries (a listing in flight then finds its lease gone and writes
    nothing) and its place in the tenant's set, in one transaction."""
    pipe = deps.redis.pipeline(transaction=True)
    pipe.zrem(keys.DUE_WATCH, watch_id)
    pipe.zrem(keys.poison(keys.DUE_WATCH), watch_id)
    pipe.hdel(keys.leases(keys.DUE_WATCH), watch_id)
    pipe.hdel(keys.lease_fails(keys.leases(keys.DUE_WATCH)), watch_id)
    pipe.delete(keys.watch(watch_id), keys.watch_seen(watch_id))
    pipe.srem(keys.tenant_watches(tenant), watch_id)
    await pipe.execute()
