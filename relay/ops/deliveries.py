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
from relay.ops.errors import Conflict, Invalid, NotFound
from relay.ops.paging import Page, check_limit
from relay.ops.subscriptions import list_all as list_subscriptions
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
    total: int = 0  # rows in the whole (capped) log
    offset: int = 0


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
    #: (event id, subscription id) of a delivery queued behind another event of the run on the
    #: same lane (a subscription gets a run's events in order) -> that head event's sequence
    #: and its delivery state (`retrying`: the head keeps failing, so this one waits)
    waiting_behind: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)


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


async def recover(
    deps: Deps, tenant: str, sub_id: str, since: float, *, unless_failing: bool = False
) -> Recovered:
    """Queue again every delivery of this subscription dead-lettered at or after `since` (unix
    seconds), each in one atomic step that takes it out of the dead index only if it is still
    there: concurrent recovers queue each dead letter once. With `unless_failing`, a
    subscription whose endpoint is still failing is refused (Conflict `endpoint_failing`), so
    a view can ask first: recovered into a failing endpoint, every delivery fails again."""
    sub = await own(deps, tenant, sub_id)
    if unless_failing and sub.get("failing_since"):
        raise Conflict(
            "endpoint_failing",
            "the endpoint is still failing: recovered deliveries will most likely fail again",
        )
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
    """The attempt log, newest first, `limit` rows from `offset` (then filtered by event), with
    the log's length (it is capped at RELAY_ATTEMPT_RETENTION)."""
    sub = await own(deps, tenant, sub_id)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.llen(keys.sub_attempts(sub["id"]))
    pipe.lrange(keys.sub_attempts(sub["id"]), offset, offset + limit - 1)
    total, rows = await pipe.execute()
    data = [loads(row) for row in rows]
    if event_id:
        data = [row for row in data if row.get("event_id") == event_id]
    more = len(rows) == limit
    return AttemptPage(data, str(offset + limit) if more else None, int(total), offset)


async def dead_letters(
    deps: Deps, tenant: str, sub_id: str, *, offset: int = 0, limit: int = 100
) -> Page[DeadLetter]:
    """One subscription's dead letters, newest first, `limit` from `offset`, and how many."""
    check_limit(limit)
    sub = await own(deps, tenant, sub_id)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.zcard(keys.sub_dead(sub["id"]))
    pipe.zrevrange(keys.sub_dead(sub["id"]), offset, offset + limit - 1, withscores=True)
    total, rows = await pipe.execute()
    out = []
    for member, score in rows:
        event_id, _, run_id = member.partition("|")
        out.append(DeadLetter(event_id, run_id, float(score)))
    return Page(out, int(total), offset, limit)


#: Delivery health reads the newest HEALTH_SAMPLE attempts of a subscription (one LRANGE) and
#: rates those made in the last HEALTH_WINDOW seconds.
HEALTH_SAMPLE = 200
HEALTH_WINDOW = 3600.0


@dataclass(frozen=True)
class Health:
    """How a subscription's deliveries are doing, at a glance."""

    state: str  # healthy | failing | disabled
    since: float | None  # failing since, or disabled at
    reason: str | None  # why it was disabled
    dead: int  # dead letters waiting to be recovered
    window: float  # seconds the rate covers
    attempts: int  # attempts in the window (of the newest HEALTH_SAMPLE)
    succeeded: int
    last: dict[str, Any] | None  # the newest attempt

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.attempts if self.attempts else None

    def public(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since,
            "reason": self.reason,
            "dead_letters": self.dead,
            "window_seconds": self.window,
            "attempts": self.attempts,
            "succeeded": self.succeeded,
            "success_rate": self.success_rate,
            "last_attempt": self.last,
        }


def _health(sub: dict[str, Any], dead: int, rows: list[str], now: float) -> Health:
    log = [loads(row) for row in rows]
    recent = [a for a in log if float(a.get("at") or 0) >= now - HEALTH_WINDOW]
    ok = sum(a.get("outcome") == "succeeded" for a in recent)
    if not sub["enabled"]:
        state, since = "disabled", sub["disabled_at"]
    elif sub["failing_since"]:
        state, since = "failing", sub["failing_since"]
    else:
        state, since = "healthy", None
    return Health(
        state,
        since,
        sub["disabled_reason"] if state == "disabled" else None,
        dead,
        HEALTH_WINDOW,
        len(recent),
        ok,
        log[0] if log else None,
    )


async def health_of(deps: Deps, subs: list[dict[str, Any]]) -> dict[str, Health]:
    """Health of the given subscriptions (their public shape, already the tenant's): one
    pipelined ZCARD and bounded LRANGE each."""
    if not subs:
        return {}
    pipe = deps.redis.pipeline(transaction=False)
    for sub in subs:
        pipe.zcard(keys.sub_dead(sub["id"]))
        pipe.lrange(keys.sub_attempts(sub["id"]), 0, HEALTH_SAMPLE - 1)
    found = await pipe.execute()
    now = time.time()
    return {
        sub["id"]: _health(sub, int(found[2 * i]), found[2 * i + 1], now)
        for i, sub in enumerate(subs)
    }


async def health(deps: Deps, tenant: str, sub_id: str) -> Health:
    sub = public(await own(deps, tenant, sub_id))
    return (await health_of(deps, [sub]))[sub_id]


#: The tenant-wide deliveries log reads at most this many of each subscription's newest
#: attempts (one subscription chosen: its whole log, RELAY_ATTEMPT_RETENTION rows).
LOG_PER_SUBSCRIPTION = 200
OUTCOMES = ("succeeded", "retrying", "dead", "disabled")


@dataclass(frozen=True)
class DeliveryLog:
    page: Page[dict[str, Any]]  # attempts, each with its `subscription_id`
    subscriptions: list[dict[str, Any]]  # the tenant's, for choosing one
    window: int  # attempts read per subscription


async def delivery_log(
    deps: Deps,
    tenant: str,
    *,
    sub_id: str | None = None,
    outcome: str | None = None,
    since: float | None = None,
    offset: int = 0,
    limit: int = 50,
) -> DeliveryLog:
    """Delivery attempts across the tenant's subscriptions (or one), newest first, filtered by
    outcome and time. Bounded: each subscription's newest LOG_PER_SUBSCRIPTION attempts (one
    subscription: its whole capped log) are read, merged and filtered; the page says so."""
    check_limit(limit)
    if outcome is not None and outcome not in OUTCOMES:
        raise Invalid("outcome", f"outcome: expected one of {', '.join(OUTCOMES)}")
    subs = [public(s) for s in await subs_store.tenant_subs(deps.redis, tenant)]
    subs = [s for s in subs if s["kind"] != subs_store.CALLBACK]
    chosen = subs
    window = LOG_PER_SUBSCRIPTION
    if sub_id:
        chosen = [s for s in subs if s["id"] == sub_id]
        if not chosen:
            raise NotFound("subscription")
        window = deps.settings.attempt_retention
    pipe = deps.redis.pipeline(transaction=False)
    for sub in chosen:
        pipe.lrange(keys.sub_attempts(sub["id"]), 0, window - 1)
    rows: list[dict[str, Any]] = []
    for sub, log in zip(chosen, await pipe.execute() if chosen else [], strict=True):
        for raw in log:
            row = loads(raw)
            row["subscription_id"] = sub["id"]
            rows.append(row)
    if outcome:
        rows = [row for row in rows if row.get("outcome") == outcome]
    if since:
        rows = [row for row in rows if float(row.get("at") or 0) >= since]
    rows.sort(key=lambda row: float(row.get("at") or 0), reverse=True)
    return DeliveryLog(Page(rows[offset : offset + limit], len(rows), offset, limit), subs, window)


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
    return RunDeliveries(run, subs, dict(by_pair), bodies, await _waiting(deps, run))


async def _waiting(deps: Deps, run: dict[str, Any]) -> dict[tuple[str, str], tuple[int, str]]:
    """Which of the run's queued deliveries wait behind another of its events: the head of each
    subscription's lane (one LINDEX per subscription the run's events went to)."""
    queued = [
        (e["id"], d["subscription_id"])
        for e in run["events"]
        for d in e["deliveries"]
        if d["state"] in ("pending", "retrying")
    ]
    lanes = sorted({sub_id for _, sub_id in queued})
    if not lanes:
        return {}
    pipe = deps.redis.pipeline(transaction=False)
    for sub_id in lanes:
        pipe.lindex(keys.lane(sub_id, run["id"]), 0)
    heads = dict(zip(lanes, await pipe.execute(), strict=True))
    known = {
        (e["id"], d["subscription_id"]): (e["sequence"], d["state"] or "")
        for e in run["events"]
        for d in e["deliveries"]
    }
    out: dict[tuple[str, str], tuple[int, str]] = {}
    for event_id, sub_id in queued:
        head = heads.get(sub_id)
        if head and head != event_id and (head, sub_id) in known:
            out[(event_id, sub_id)] = known[(head, sub_id)]
    return out


async def overview(deps: Deps, tenant: str) -> list[tuple[dict[str, Any], Health]]:
    """The tenant's subscriptions, each with its delivery health."""
    subs = await list_subscriptions(deps, tenant)
    found = await health_of(deps, subs)
    return [(sub, found[sub["id"]]) for sub in subs]


@dataclass(frozen=True)
class SubscriptionView:
    sub: dict[str, Any]
    health: Health
    dead: Page[DeadLetter]
    attempts: AttemptPage


async def subscription_view(
    deps: Deps,
    tenant: str,
    sub_id: str,
    *,
    dead_offset: int = 0,
    attempts_offset: int = 0,
    event_id: str | None = None,
    limit: int = 50,
) -> SubscriptionView:
    """One subscription with its health, a page of its dead letters and one of its attempt
    log (with an event chosen: that event's attempts among the whole capped log)."""
    sub = public(await own(deps, tenant, sub_id))
    found = await health_of(deps, [sub])
    dead = await dead_letters(deps, tenant, sub_id, offset=dead_offset, limit=limit)
    log = await attempts(
        deps,
        tenant,
        sub_id,
        offset=0 if event_id else attempts_offset,
        limit=deps.settings.attempt_retention if event_id else limit,
        event_id=event_id,
    )
    return SubscriptionView(sub, found[sub_id], dead, log)
