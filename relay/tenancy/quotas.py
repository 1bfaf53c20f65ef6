"""Per-tenant quotas checked and taken in one script, so concurrent requests cannot overshoot.

Active runs (RELAY_MAX_ACTIVE_RUNS) are counted by CREATE_RUN itself
(relay/store/lua/create_run.lua);
subscriptions (RELAY_MAX_SUBSCRIPTIONS) here: the tenant's subscription set is the count."""

from __future__ import annotations

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.client import bind


async def add_subscription(
    r: aioredis.Redis, tenant: str, sub_id: str, fields: dict[str, str], limit: int
) -> bool:
    """Add the subscription unless the tenant has `limit` already (lua/add_subscription.lua)."""
    flat = [item for pair in fields.items() for item in pair]
    added = await bind(r).add_subscription(
        keys=[keys.tenant_subs(tenant), keys.subscription(sub_id)], args=[limit, sub_id, *flat]
    )
    return bool(added)
