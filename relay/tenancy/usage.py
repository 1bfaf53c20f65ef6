"""Usage per tenant, for billing a tenant's own clients: counters in one hash per tenant per UTC
day (`relay:usage:{tenant}:{YYYYMMDD}`), each write renewing its expiry of RELAY_USAGE_DAYS, so
a day's counters end that long after the day's last write.

Counted where the thing happens: `runs_started` and `credits` when a vendor accepted a new
start (an idempotent replay charges nothing and counts nothing), `vendor_requests` for every
request sent to a vendor on the tenant's behalf, `deliveries` for every webhook POST made to one
of the tenant's endpoints and `delivered` for those answered 2xx."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.autopipe import Command

FIELDS = ("runs_started", "credits", "vendor_requests", "deliveries", "delivered")
MAX_DAYS = 400


def day_of(ts: float) -> str:
    return _day(int(ts // 86400))


@lru_cache(maxsize=8)
def _day(days: int) -> str:
    """`YYYYMMDD` of a UTC day number: cached, since every delivery and vendor request asks."""
    return datetime.fromtimestamp(days * 86400, UTC).strftime("%Y%m%d")


def key(tenant: str, now: float | None = None) -> str:
    """Today's counters of `tenant` (for a script that counts in the same step as its writes)."""
    return keys.usage(tenant, day_of(time.time() if now is None else now))


def commands(
    tenant: str, counts: dict[str, int], days: int, now: float | None = None
) -> list[Command]:
    """The commands adding `counts` to today's counters (sent by the caller, e.g. in the same
    round trip as its own writes)."""
    day = key(tenant, now)
    out: list[Command] = [("HINCRBY", day, name, n) for name, n in counts.items() if n]
    if out:
        out.append(("EXPIRE", day, ttl(days)))
    return out


def ttl(days: int) -> int:
    """A day's counters live this long after its last write."""
    return int(days * 86400)


def ttl_from_first_write(days: int) -> int:
    """The expiry for a writer that sets it only when it makes the day's key
    (lua/delivered.lua): a day more than `ttl`, so the counters still outlive the day's last
    write by `ttl`."""
    return ttl(days) + 86400


async def read(
    r: aioredis.Redis, tenant: str, since: float, now: float | None = None
) -> dict[str, Any]:
    """Totals and per-day counters from the UTC day of `since` through today."""
    now = time.time() if now is None else now
    first = datetime.fromtimestamp(min(since, now), UTC).date()
    last = datetime.fromtimestamp(now, UTC).date()
    span = min((last - first).days, MAX_DAYS)
    first = last - timedelta(days=span)
    days = [(first + timedelta(days=i)).strftime("%Y%m%d") for i in range(span + 1)]
    pipe = r.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(keys.usage(tenant, day))
    rows = await pipe.execute()
    totals = dict.fromkeys(FIELDS, 0)
    per_day = []
    for day, row in zip(days, rows, strict=True):
        if not row:
            continue
        counts = {name: int(row.get(name) or 0) for name in FIELDS}
        for name, n in counts.items():
            totals[name] += n
        per_day.append({"day": f"{day[:4]}-{day[4:6]}-{day[6:]}", **counts})
    return {
        "since": f"{days[0][:4]}-{days[0][4:6]}-{days[0][6:]}",
        "totals": totals,
        "days": per_day,
    }
