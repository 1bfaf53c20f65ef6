"""Putting an event (back) on a delivery lane: redeliver, recover, ping."""

from __future__ import annotations

import redis.asyncio as aioredis

from relay import keys
from relay.store.client import bind


async def enqueue(r: aioredis.Redis, sub_id: str, run_id: str, event_id: str, now: float) -> None:
    await bind(r).enqueue_lane(
        keys=[
            keys.lane(sub_id, run_id),
            keys.delivery(event_id, sub_id),
            keys.DUE_DELIVER,
            keys.sub_pairs(sub_id),
        ],
        args=[event_id, now, keys.pair(sub_id, run_id), run_id],
    )
