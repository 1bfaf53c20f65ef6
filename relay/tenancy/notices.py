"""Tenant notices: what the relay tells a tenant about faults it can fix itself (a disabled
subscription, vendor credentials refused, a vendor list it could not page through).

The list `keys.tenant_notices` is newest first and trimmed to `KEPT`; a fault that hits many
runs at once keeps one notice per `GATE_SECONDS` (the gate key expires), not one per run.

Each notice is also an operational event (relay/delivery/events.py builds its body): the script
that keeps the notice queues it, through the same gate and in the same step, for the tenant's
subscriptions whose `filter.event_types` names its type (never the subscription the notice is
about), on their run-less lane (`RUNLESS`, shared with pings)."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from relay.ids import new_id
from relay.store import keys
from relay.store.client import bind, dumps

KEPT = 1000
GATE_SECONDS = 300
#: The lane of events that belong to no run (pings, operational events): `<sub>|ping`.
RUNLESS = "ping"
#: How long an operational event (its body and delivery records) is kept, as a ping's.
EVENT_TTL = 7 * 86400


def event_args(notice: dict[str, Any], body: str, tenant: str) -> list[Any]:
    """The ARGV tail every notice-keeping script takes for the event that tells the notice:
    tenant, type, about, event_id, body, now, ttl, lane run."""
    return [
        tenant,
        notice["type"],
        notice.get("subscription_id") or "",
        new_id("evt"),
        body,
        repr(time.time()),
        EVENT_TTL,
        RUNLESS,
    ]


async def keep_once(
    r: aioredis.Redis,
    tenant: str,
    gate: str,
    notice: dict[str, Any],
    body: str,
    ttl: float = GATE_SECONDS,
) -> bool:
    """Keep `notice` unless one with the same `gate` was kept within `ttl` seconds; when kept,
    queue `body` (its operational event, relay/delivery/events.py `notice_body`) for the
    subscriptions that asked for its type."""
    kept = await bind(r).keep_notice(
        keys=[keys.notice_gate(tenant, gate), keys.tenant_notices(tenant)],
        args=[int(ttl), dumps(notice), KEPT, *event_args(notice, body, tenant)],
    )
    return bool(kept)
