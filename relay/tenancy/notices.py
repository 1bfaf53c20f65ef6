"""Tenant notices: what the relay tells a tenant about faults it can fix itself (a disabled
subscription, vendor credentials refused, a vendor list it could not page through).

The list `keys.tenant_notices` is newest first and trimmed to `KEPT`; a fault that hits many
runs at once keeps one notice per `GATE_SECONDS` (the gate key expires), not one per run."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.client import bind, dumps

KEPT = 1000
GATE_SECONDS = 300


async def keep_once(
    r: aioredis.Redis, tenant: str, gate: str, notice: dict[str, Any], ttl: float = GATE_SECONDS
) -> bool:
    """Keep `notice` unless one with the same `gate` was kept within `ttl` seconds."""
    kept = await bind(r).keep_notice(
        keys=[keys.notice_gate(tenant, gate), keys.tenant_notices(tenant)],
        args=[int(ttl), dumps(notice), KEPT],
    )
    return bool(kept)
