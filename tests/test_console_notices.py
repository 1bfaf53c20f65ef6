"""Notices are kept once per fault: a subscription disabled while many deliveries to it are in
flight (each failing on its own, each reaching `_disable`) gives the tenant one
`subscription.disabled` notice, not one per delivery (issue 26: Recover into a 404 endpoint
made 16 identical notices in a second). Enabling it again makes the next disable news again."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from relay.store import keys
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique
from workers.deliver import _disable


def _disabled_notices(r: redis.Redis, tenant: str, sub_id: str) -> list[dict[str, Any]]:
    rows = cast(list[str], r.lrange(keys.tenant_notices(tenant), 0, -1))
    found = [json.loads(row) for row in rows]
    return [
        n
        for n in found
        if n.get("type") == "subscription.disabled" and n.get("subscription_id") == sub_id
    ]


async def test_a_disable_hit_by_every_delivery_in_flight_keeps_one_notice(
    stack: Stack, receiver: Receiver
) -> None:
    with stack.client("t1") as api:
        sub = subscribe(api, receiver.url(unique("flood")), description="flood")
    record = {"id": sub["id"], "tenant": "t1"}
    sync = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    r = aioredis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    try:
        ctx = cast(Any, SimpleNamespace(redis=r))
        reason = "every delivery failed for 432000s"
        now = time.time()
        # 16 deliveries in flight, each failing and each disabling the subscription.
        await asyncio.gather(*(_disable(ctx, record, reason, now) for _ in range(16)))
        kept = _disabled_notices(sync, "t1", sub["id"])
        assert len(kept) == 1, kept
        assert kept[0]["reason"] == reason
        with stack.client("t1") as api:
            shown = api.get("/v1/subscriptions/" + sub["id"]).json()
            assert shown["enabled"] is False and shown["disabled_reason"] == reason
            listed = api.get("/v1/notices", params={"limit": 200}).json()
            assert sum(n.get("subscription_id") == sub["id"] for n in listed["data"]) == 1
            assert listed["total"] >= 1

            # Enabled again, then disabled again: that is news, one more notice.
            assert api.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": True}).is_success
        await asyncio.gather(*(_disable(ctx, record, reason, time.time()) for _ in range(5)))
        assert len(_disabled_notices(sync, "t1", sub["id"])) == 2
    finally:
        await r.aclose()
        sync.close()
