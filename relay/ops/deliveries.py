"""Deliveries: send one event again (redeliver), replay a subscription's dead letters (recover),
and the reads behind them: the attempt log, the dead letters, a run's deliveries.

Both redeliver and recover start the delivery on a FRESH retry schedule (its attempt count for
the schedule goes back to 0, the attempt log keeps every earlier attempt), and each delivery is
queued by one script (relay/store/lua/: enqueue_lane.lua, recover_dead.lua)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from relay.ops import runs
from relay.ops.deps import Deps
from relay.ops.errors import Invalid, NotFound
from relay.ops.subscriptions import own, public
from relay.store import keys, lanes
from relay.store import subscriptions as subs_store
from relay.store.client import loads
from relay.store.packing import unpack
from relay.store.runs import get_tenant_run

PING_LANE = "ping"


@dataclass(frozen=True)
class Redelivered:
    event_id: str
    subscriptions: list[str]  # the subscriptions it was queued for again
    run_id: str  # "ping" for a ping event


@dataclass(frozen=True)
class Recovered:
    recovered: int  # dead letters queued again by this call


@dataclass(frozen=True)
class AttemptPage:
    data: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    run_id: str  # "ping" for a ping event
    dead_at: float


@dataclass(frozen=True)
class RunDeliveries:
    """A run with its events (the API's shape), the subscriptions they went to that still exist
    (callbacks included), and each (event, subscription)'s attempts, oldest last."""

    run: dict[str, Any]
    subscriptions: dict[str, dict[str, Any]]
    attempts: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    #: event id -> the body it sent (the same bytes to every subscriber, on every attempt)
    bodies: dict[str, str] = field(default_factory=dict)


async def redeliver(
    deps: Deps, tenant: str, event_id: str, subscription_id: str | None = None
) -> Redelivered:
    """Queue one event again for every subscription it went to (or only `subscription_id`)."""
    r = deps.redis
    event = await r.hgetall(keys.event(event_id))
    if not event:
        raise NotFound("event")
    run_id = event.get("run_id") or PING_LANE
    owner = event.get("tenant")
    if run_id != PING_LANE:
        run = await get_tenant_run(r, tenant, run_id)
        owner = run["tenant"] if run else None
    if owner != tenant:
        raise NotFound("event")
    targets = [s for s in (event.get("subs") or "").split(",") if s]
    if subscription_id is not None:
        if subscription_id not in targets:
            raise Invalid(
                "subscription_id", "subscription_id: the event was not sent to this subscription"
            )
        targets = [subscription_id]
    now = time.time()
    queued = []
    for sub_id in targets:
        if await subs_store.get_tenant_sub(r, tenant, sub_id) is None:
            continue
        await lanes.enqueue(r, sub_id, run_id, event["id"], now)
        queued.append(sub_id)
    return Redelivered(event["id"], queued, run_id)


async def recover(deps: Deps, tenant: str, sub_id: str, since: float) -> Recovered:
    """Queue again every delivery of this subscription dead-lettered at or after `since` (unix
    seconds), each in one atomic step that takes it out of the dead index only if it is still
    there: concurrent recovers queue each dead letter once."""
    sub = await own(deps, tenant, sub_id)
    r = deps.redis
    dead = await r.zrangebyscore(keys.sub_dead(sub["id"]), max(since, 0.0), "+inf")
    now = time.time()
    recovered = 0
    for member in dead:
        recovered += await lanes.recover_dead(r, sub["id"], member, now)
    return Recovered(recovered)


async def attempts(
    deps: Deps,
    tenant: str,
    sub_id: str,
    *,
    offset: int = 0,
    limit: int = 50,
    event_id: str | None = None,
) -> AttemptPage:
    """The attempt log, newest first, `limit` rows from `offset` (then filtered by event)."""
    sub = await own(deps, tenant, sub_id)
    rows = await deps.redis.lrange(keys.sub_attempts(sub["id"]), offset, offset + limit - 1)
    data = [loads(row) for row in rows]
    if event_id:
        data = [row for row in data if row.get("event_id") == event_id]
    more = len(rows) == limit
    return AttemptPage(data, str(offset + limit) if more else None)


async def dead_letters(deps: Deps, tenant: str, sub_id: str, limit: int = 100) -> list[DeadLetter]:
    """The newest dead letters of one subscription."""
    sub = await own(deps, tenant, sub_id)
    rows = await deps.redis.zrevrange(keys.sub_dead(sub["id"]), 0, limit - 1, withscores=True)
    out = []
    for member, score in rows:
        event_id, _, run_id = member.partition("|")
        out.append(DeadLetter(event_id, run_id, float(score)))
    return out


async def dead_counts(deps: Deps, tenant: str) -> dict[str, int]:
    """How many dead letters each of the tenant's subscriptions holds."""
    r = deps.redis
    ids = sorted(await r.smembers(keys.tenant_subs(tenant)))
    if not ids:
        return {}
    pipe = r.pipeline(transaction=False)
    for sub_id in ids:
        pipe.zcard(keys.sub_dead(sub_id))
    return {sub_id: int(n) for sub_id, n in zip(ids, await pipe.execute(), strict=True)}


async def of_run(deps: Deps, tenant: str, run_id: str) -> RunDeliveries:
    """Everything about a run's deliveries: each event, each subscriber, each attempt."""
    run = await runs.get(deps, tenant, run_id)
    sub_ids = sorted({d["subscription_id"] for e in run["events"] for d in e["deliveries"]})
    subs: dict[str, dict[str, Any]] = {}
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for sub_id in sub_ids:
        sub = await subs_store.get_tenant_sub(deps.redis, tenant, sub_id)
        if sub is None:
            continue
        subs[sub_id] = public(sub)
        log = await deps.redis.lrange(
            keys.sub_attempts(sub_id), 0, deps.settings.attempt_retention - 1
        )
        for a in map(loads, log):
            if a.get("run_id") == run["id"]:
                by_pair[(a.get("event_id") or "", sub_id)].append(a)
    ids = [e["id"] for e in run["events"]]
    pipe = deps.redis.pipeline(transaction=False)
    for evt in ids:
        pipe.hget(keys.event(evt), "body")
    sent = await pipe.execute() if ids else []
    # Stored compressed where that pays (relay/store/packing.py): shown as sent.
    bodies = {evt: unpack(body) for evt, body in zip(ids, sent, strict=True) if body}
    return RunDeliveries(run, subs, dict(by_pair), bodies)
