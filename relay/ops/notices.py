"""Notices: what the relay did or saw by itself that a tenant can fix (`subscription.disabled`,
`vendor.unauthorized`, `watch.listing_truncated`), newest first. Written by the workers
(relay/tenancy/notices.py); kept to the last 1,000 per tenant."""

from __future__ import annotations

from typing import Any

from relay.ops.deps import Deps
from relay.store import keys
from relay.store.client import loads


async def list_all(deps: Deps, tenant: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = await deps.redis.lrange(keys.tenant_notices(tenant), 0, limit - 1)
    return [loads(row) for row in rows]
