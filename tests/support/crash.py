"""The crash-point harness: run one job (or one ingress request) of the real relay code against real
Valkey with a Redis client that dies right after its N-th write lands (relay/store/crashpoint.py),
then
a fresh "process" (new clients, new context, the real pumps) takes over, and the invariants are
checked. Each crash point gets its own Valkey database, so points run side by side in one event
loop, sharing one Valkey, the simulators and the receiver.

In-process, "dying" is: the crashing client raises CrashPoint after the write and refuses every
later command, its job task is cancelled, its connections dropped; nothing it still had in hand
(a claimed lease, a half-done sequence of writes) is finished by anyone but the fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from relay.config import Settings
from relay.ids import new_id
from relay.store import keys
from relay.store.crashpoint import Counter, CrashPoint, connection_class
from relay.store.leases import claim
from relay.store.runs import STARTING, TRACKING, create_run, upstream_key
from relay.store.subscriptions import new_sub_fields
from tests.support.receiver import Receiver
from tests.support.stack import AUTOPOSTING_KEY, CITEDY_KEY
from workers.context import Context, build_context
from workers.settings import build_pumps

TENANT = "cp"
API_KEY = "key-crash-points-0123456789"
CRASH_LEASE = 0.4  # the crashed job's lease: the fresh process takes over after it


def settings(redis_url: str, sim_url: str, **extra: str) -> Settings:
    env = {
        "REDIS_URL": redis_url,
        "RELAY_API_KEYS": f"{TENANT}:{API_KEY}",
        "CITEDY_BASE_URL": sim_url,
        "CITEDY_API_KEY": CITEDY_KEY,
        "AUTOPOSTING_BASE_URL": sim_url + "/autoposting",
        "AUTOPOSTING_API_KEY": AUTOPOSTING_KEY,
        "RELAY_ALLOW_PRIVATE_URLS": "true",
        "RELAY_RETRY_SCHEDULE": "0.05,0.05",
        "RELAY_POLL_MIN_INTERVAL": "0.05",
        "RELAY_POLL_MAX_INTERVAL": "0.1",
        "RELAY_DELIVERY_TIMEOUT": "3",
        "RELAY_VENDOR_TIMEOUT": "3",
        "RELAY_LEASE_SECONDS": "4.5",
        "RELAY_VENDOR_RATE": "2000",
        "RELAY_WATCH_INTERVAL": "0.2",
        "RELAY_NOT_FOUND_LIMIT": "1",
        "RELAY_LOG_LEVEL": "warning",
        **extra,
    }
    return Settings(**env)  # type: ignore[arg-type]


@dataclass
class Env:
    """One crash point's world: its database, its hook, the simulators by name."""

    db_url: str
    sims: dict[str, str]
    receiver: Receiver
    hook: str
    r: aioredis.Redis
    facts: dict[str, Any] = field(default_factory=dict)

    def settings(self, sim: str = "ok", **extra: str) -> Settings:
        return settings(self.db_url, self.sims[sim], **extra)

    def crash_client(self, counter: Counter) -> aioredis.Redis:
        client: aioredis.Redis = aioredis.Redis.from_url(
            self.db_url, decode_responses=True, connection_class=connection_class(counter)
        )
        return client


async def until_dead_or_done(counter: Counter, work: Awaitable[Any], limit: float = 40.0) -> None:
    """Run `work` until it ends or its client died; a dead client's work is cancelled (what
    was still in flight in the dead process never lands)."""
    task = asyncio.ensure_future(work)
    deadline = time.monotonic() + limit
    while not task.done() and not counter.dead:
        if time.monotonic() > deadline:
            task.cancel()
            raise AssertionError("the job neither finished nor crashed")
        await asyncio.sleep(0.005)
    if not task.done():
        task.cancel()
    with contextlib.suppress(CrashPoint, asyncio.CancelledError, httpx.HTTPError):
        await task


async def one_job(
    ctx: Context, due: str, handler: Callable[[Context, str, Any], Awaitable[None]]
) -> None:
    """What a pump does for one member: claim it (a write), run its job."""
    held = await claim(ctx.redis, due, CRASH_LEASE, 1)
    assert len(held) == 1, f"expected one due member in {due}, got {held}"
    await handler(ctx, held[0].member, held[0])


async def crash_job(
    env: Env,
    counter: Counter,
    due: str,
    handler: Callable[[Context, str, Any], Awaitable[None]],
    sim: str = "ok",
) -> None:
    rc = env.crash_client(counter)
    ctx = build_context(rc, env.settings(sim))
    try:
        await until_dead_or_done(counter, one_job(ctx, due, handler))
    finally:
        await _close(ctx)


async def _close(ctx: Context) -> None:
    with contextlib.suppress(Exception):
        await ctx.aclose()
    with contextlib.suppress(Exception):
        await ctx.redis.aclose(close_connection_pool=True)


async def recover(
    env: Env,
    done: Callable[[], Awaitable[list[str]]],
    *,
    sim: str = "ok",
    timeout: float = 25.0,
    before: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """A fresh worker (the real pumps, a new client) until `done` reports no problem left;
    returns the last problems (empty: all invariants hold)."""
    rf: aioredis.Redis = aioredis.Redis.from_url(env.db_url, decode_responses=True)
    ctx = build_context(rf, env.settings(sim))
    pumps = build_pumps(ctx)
    for pump in pumps:
        pump._idle = max(pump._idle, 0.1)  # many stacks share the box: idle claims less often
    tasks = [asyncio.create_task(p.run()) for p in pumps]
    problems = ["not checked"]
    try:
        if before is not None:
            await before()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            problems = await done()
            if not problems:
                break
            await asyncio.sleep(0.1)
    finally:
        for pump in pumps:
            pump._stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(p.drain(1.0) for p in pumps), return_exceptions=True)
        await _close(ctx)
    return problems


async def add_subscription(r: aioredis.Redis, url: str, tenant: str = TENANT) -> str:
    sub_id = new_id("sub")
    fields = new_sub_fields(
        sub_id=sub_id,
        tenant=tenant,
        url=url,
        filter_={},
        description="crash point",
        sealed_secret="whsec_" + "A" * 32,
        now=time.time(),
    )
    await r.hset(keys.subscription(sub_id), mapping=fields)
    await r.sadd(keys.tenant_subs(tenant), sub_id)
    return sub_id


def run_record(
    now: float,
    provider: str,
    agent_id: str,
    upstream: str,
    state: str,
    source: str,
    tenant: str = TENANT,
) -> dict[str, str]:
    """A new run's hash as the ingress writes it (relay/ops/runs.py `start`), with a new id."""
    return {
        "id": new_id("run"),
        "tenant": tenant,
        "provider": provider,
        "agent_id": agent_id,
        "upstream_run_id": upstream,
        "state": state,
        "status": "",
        "sequence": "0",
        "source": source,
        "metadata": "{}",
        "created_at": repr(now),
        "updated_at": repr(now),
        "poll_interval": "0",
    }


async def track(
    r: aioredis.Redis, upstream: str, provider: str = "citedy", agent_id: str = ""
) -> str:
    now = time.time()
    record = run_record(now, provider, agent_id, upstream, TRACKING, "track")
    run_id = record["id"]
    created = await create_run(
        r,
        run=record,
        due_key=keys.DUE_POLL,
        due_at=now,
        idempotency_key=None,
        request_hash="",
        upstream_key=upstream_key(TENANT, provider, agent_id, upstream),
    )
    assert created.outcome == "created"
    return run_id


async def starting(r: aioredis.Redis, payload: dict[str, Any], callback: str | None = None) -> str:
    """A run the relay is to start (as `POST /v1/runs` with `input` makes it), due now; with
    `callback`, its callback subscription made with it."""
    now = time.time()
    record = run_record(now, "citedy", "", "", STARTING, "start")
    record["input"] = json.dumps(payload)
    run_id = record["id"]
    sub = None
    if callback:
        record["callback_url"] = callback
        record["callback_sub"] = new_id("sub")
        sub = new_sub_fields(
            sub_id=record["callback_sub"],
            tenant=TENANT,
            url=callback,
            filter_={},
            description="callback",
            sealed_secret=None,
            now=now,
            run_id=run_id,
        )
        await r.set(keys.tenant_callback_secret(TENANT), "whsec_" + "B" * 32, nx=True)
    await create_run(
        r,
        run=record,
        due_key=keys.DUE_START,
        due_at=now,
        idempotency_key=None,
        request_hash="",
        upstream_key=None,
        callback_sub=sub,
    )
    return run_id


async def run_problems(
    env: Env, run_id: str, *, state: str, dead: bool = False, hook: str | None = None
) -> list[str]:
    """The invariants of one run after the fresh process: it reached `state`, nothing of it is
    still scheduled or held, its events are one per status, and every event reached every
    subscriber it was recorded for (succeeded, or dead-lettered when `dead`) — seen by the
    receiver, one webhook id per (run, status), in sequence order."""
    r = env.r
    run = await r.hgetall(keys.run(run_id))
    out = []
    if run.get("state") != state:
        return [f"{run_id} state {run.get('state')!r}, want {state!r}"]
    for due in (keys.DUE_START, keys.DUE_POLL):
        if await r.zscore(due, run_id) is not None:
            out.append(f"{run_id} still in {due}")
        if await r.hexists(keys.leases(due), run_id):
            out.append(f"{run_id} still leased in {due}")
    ids = await r.lrange(keys.run_events(run_id), 0, -1)
    statuses = []
    for evt in ids:
        event = await r.hgetall(keys.event(evt))
        statuses.append(event.get("status"))
        for sub in filter(None, (event.get("subs") or "").split(",")):
            dlv = await r.hget(keys.delivery(evt, sub), "state")
            want = "dead" if dead else "succeeded"
            if dlv != want:
                out.append(f"{evt} to {sub}: {dlv}, want {want}")
    if len(statuses) != len(set(statuses)):
        out.append(f"{run_id} doubled events: {statuses}")
    hits = [h for h in env.receiver.got(hook or env.hook) if h.json["data"]["run"]["id"] == run_id]
    per_status: dict[str, set[str]] = defaultdict(set)
    for hit in hits:
        per_status[hit.json["data"]["run"]["status"]].add(hit.headers["webhook-id"])
    if any(len(v) > 1 for v in per_status.values()):
        out.append(f"{run_id}: two event ids for one status: {dict(per_status)}")
    got = {h.headers["webhook-id"] for h in hits}
    if not dead and set(ids) - got:
        out.append(f"{run_id}: not received {sorted(set(ids) - got)}")
    seqs = [h.json["data"]["run"]["sequence"] for h in hits if h.succeeded]
    if seqs != sorted(seqs):
        out.append(f"{run_id}: out of order {seqs}")
    return out
