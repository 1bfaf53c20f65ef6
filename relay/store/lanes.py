"""Putting an event (back) on a delivery lane: redeliver, recover, ping. Each is one script, and
each starts the delivery on a fresh retry schedule (see ENQUEUE_LANE and RECOVER_DEAD)."""

from __future__ import annotations

import redis.asyncio as aioredis

from relay.ids import new_id
from relay.store import keys
from relay.store.client import bind

PING_TTL = 7 * 86400


def finish_keys(sub_id: str, run_id: str, event_id: str) -> list[str]:
    """KEYS of lua/finish_head.lua for the head `event_id` of the lane (sub_id, run_id): the one
    place they are listed, for the deliver job, the benches and the tests."""
    return [
        keys.lane(sub_id, run_id),
        keys.delivery(event_id, sub_id),
        keys.DUE_DELIVER,
        keys.sub_pairs(sub_id),
        keys.sub_dead(sub_id),
        keys.leases(keys.DUE_DELIVER),
        keys.sub_waiting(sub_id),
    ]


def delivered_keys(sub_id: str, run_id: str, event_id: str, usage: str) -> list[str]:
    """KEYS of lua/delivered.lua: finish_head's, then the subscription, its attempt log and the
    tenant's usage counters of the day (`usage`)."""
    return [
        *finish_keys(sub_id, run_id, event_id),
        keys.subscription(sub_id),
        keys.sub_attempts(sub_id),
        usage,
    ]


async def enqueue(r: aioredis.Redis, sub_id: str, run_id: str, event_id: str, now: float) -> None:
    await bind(r).enqueue_lane(
        keys=[
            keys.lane(sub_id, run_id),
            keys.delivery(event_id, sub_id),
            keys.DUE_DELIVER,
            keys.sub_pairs(sub_id),
            keys.sub_dead(sub_id),
        ],
        args=[event_id, now, keys.pair(sub_id, run_id), run_id],
    )


async def recover_dead(r: aioredis.Redis, sub_id: str, member: str, now: float) -> bool:
    """Queue one dead letter (`<event_id>|<run_id>` in the dead index) again, atomically; False
    when it is no longer dead-lettered (a concurrent recover took it)."""
    event_id, _, run_id = member.partition("|")
    done = await bind(r).recover_dead(
        keys=[
            keys.sub_dead(sub_id),
            keys.lane(sub_id, run_id),
            keys.delivery(event_id, sub_id),
            keys.DUE_DELIVER,
            keys.sub_pairs(sub_id),
        ],
        args=[member, event_id, now, keys.pair(sub_id, run_id), run_id],
    )
    return bool(done)


async def send_ping(
    r: aioredis.Redis, sub: dict[str, str], now: float, event_type: str, body: str
) -> str:
    """Record a `ping` event (its type and body built by relay/delivery/events.py) for one
    subscription and queue it on its own lane (pings have no run, so they share the lane
    `sub|ping` and expire after a week)."""
    event_id = new_id("evt")
    pipe = r.pipeline(transaction=True)
    pipe.hset(
        keys.event(event_id),
        mapping={
            "id": event_id,
            "run_id": "",
            "tenant": sub["tenant"],
            "type": event_type,
            "sequence": "0",
            "created_at": repr(now),
            "body": body,
            "subs": sub["id"],
        },
    )
    pipe.expire(keys.event(event_id), PING_TTL)
    await pipe.execute()
    await enqueue(r, sub["id"], "ping", event_id, now)
    # A ping has no run whose retention would end its delivery record: it ends with the ping.
    await r.expire(keys.delivery(event_id, sub["id"]), PING_TTL)
    return event_id
