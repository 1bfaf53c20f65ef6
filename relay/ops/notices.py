"""Notices: what the relay did or saw by itself that a tenant can fix (`subscription.disabled`,
`vendor.unauthorized`, `watch.listing_truncated`, ...), newest first. Written by the workers
(relay/tenancy/notices.py), each kind through a keep-once gate (one notice per fault and period,
not one per run or delivery); kept to the last 1,000 per tenant.

Acknowledging is one timestamp per tenant (`keys.tenant_notices_acked`): every notice kept up to
it is `acknowledged`, so the state is one key whatever the number of notices, and a notice kept
later is new again. `grouped` folds the kept notices of one kind about one object (a
subscription, a watch, a vendor) into one row with a count and the first and last time: one
LRANGE of at most the 1,000 kept."""

from __future__ import annotations

import time
from typing import Any

from relay.ops.deps import Deps
from relay.ops.paging import Page, check_limit
from relay.store import keys
from relay.store.client import loads
from relay.tenancy.notices import KEPT


async def list_all(deps: Deps, tenant: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = await deps.redis.lrange(keys.tenant_notices(tenant), 0, limit - 1)
    return [loads(row) for row in rows]


#: The one member of `keys.tenant_notices_acked`, scored by the time acknowledged up to.
ACKED = "until"


def _acked(score: float | None) -> float:
    return float(score or 0)


def _flagged(row: str, until: float) -> dict[str, Any]:
    notice: dict[str, Any] = loads(row)
    notice["acknowledged"] = float(notice.get("at") or 0) <= until
    return notice


async def page(
    deps: Deps, tenant: str, *, offset: int = 0, limit: int = 50
) -> Page[dict[str, Any]]:
    """`limit` notices from `offset`, newest first, with how many are kept; each says whether it
    is `acknowledged`."""
    check_limit(limit)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.llen(keys.tenant_notices(tenant))
    pipe.lrange(keys.tenant_notices(tenant), offset, offset + limit - 1)
    pipe.zscore(keys.tenant_notices_acked(tenant), ACKED)
    total, rows, acked = await pipe.execute()
    until = _acked(acked)
    return Page([_flagged(row, until) for row in rows], int(total), offset, limit)


def about(notice: dict[str, Any]) -> tuple[str, str]:
    """The object a notice is about, as (kind, id): its subscription, watch or vendor."""
    for kind in ("subscription_id", "watch_id"):
        if notice.get(kind):
            return kind, str(notice[kind])
    return "provider", str(notice.get("provider") or "")


async def grouped(
    deps: Deps, tenant: str, *, offset: int = 0, limit: int = 50
) -> tuple[Page[dict[str, Any]], float]:
    """The kept notices grouped by (type, object), the group with the latest notice first:
    each has `type`, the object (`subscription_id`, `watch_id` or `provider`), `count`,
    `first_at`, `last_at`, `latest` (the newest notice of the group, with its reason and run)
    and `acknowledged` (all of its notices are). Also the tenant's `acknowledged until`."""
    check_limit(limit)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.lrange(keys.tenant_notices(tenant), 0, KEPT - 1)
    pipe.zscore(keys.tenant_notices_acked(tenant), ACKED)
    rows, acked = await pipe.execute()
    until = _acked(acked)
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:  # newest first
        notice = _flagged(row, until)
        kind, object_id = about(notice)
        at = float(notice.get("at") or 0)
        group = groups.get((str(notice.get("type")), kind, object_id))
        if group is None:
            groups[(str(notice.get("type")), kind, object_id)] = {
                "type": notice.get("type"),
                kind: object_id,
                "count": 1,
                "first_at": at,
                "last_at": at,
                "latest": notice,
                "acknowledged": notice["acknowledged"],
            }
            continue
        group["count"] += 1
        group["first_at"] = min(group["first_at"], at)
    ordered = list(groups.values())
    return Page(ordered[offset : offset + limit], len(ordered), offset, limit), until


async def acknowledge(deps: Deps, tenant: str, until: float | None = None) -> float:
    """Acknowledge the notices kept up to `until` (now if None; never later than now, never
    moving an earlier acknowledgement back). Returns the tenant's acknowledged-until time."""
    now = time.time()
    wanted = min(now, until) if until is not None else now  # a later time acknowledges up to now
    key = keys.tenant_notices_acked(tenant)
    pipe = deps.redis.pipeline(transaction=True)
    pipe.zadd(key, {ACKED: wanted}, gt=True)  # only ever forward, atomically
    pipe.zscore(key, ACKED)
    pipe.expire(key, max(1, int(deps.settings.retention)))
    _, kept, _ = await pipe.execute()
    return float(kept)
