"""Notices: what the relay did or saw by itself that a tenant can fix (`subscription.disabled`,
`vendor.unauthorized`, `watch.listing_truncated`), newest first. Written by the workers
(relay/tenancy/notices.py), each kind through a keep-once gate (one notice per fault and period,
not one per run or delivery); kept to the last 1,000 per tenant."""

from __future__ import annotations

from typing import Any

from relay.ops.deps import Deps
from relay.ops.paging import Page, check_limit
from relay.store import keys
from relay.store.client import loads


async def list_all(deps: Deps, tenant: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = await deps.redis.lrange(keys.tenant_notices(tenant), 0, limit - 1)
    return [loads(row) for row in rows]


async def page(
    deps: Deps, tenant: str, *, offset: int = 0, limit: int = 50
) -> Page[dict[str, Any]]:
    """`limit` notices from `offset`, newest first, with how many are kept."""
    check_limit(limit)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.llen(keys.tenant_notices(tenant))
    pipe.lrange(keys.tenant_notices(tenant), offset, offset + limit - 1)
    total, rows = await pipe.execute()
    return Page([loads(row) for row in rows], int(total), offset, limit)
