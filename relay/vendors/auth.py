"""Vendor 401/403 while starting or polling a run: a credentials problem (a key mistake, a key
being rotated, a WAF hiccup), not a fact about the run. So the run backs off, the tenant gets a
notice and the operator a metric, and the run gives up only after `RELAY_UNAUTHORIZED_WINDOW` of
nothing but 401/403s, measured from the first one of the current streak (a success clears it)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from relay.delivery import events
from relay.metrics import VENDOR_UNAUTHORIZED
from relay.store import keys
from relay.store.client import bind, dumps
from relay.tenancy import notices
from relay.vendors.base import Unauthorized

NOTICE = events.VENDOR_UNAUTHORIZED
# Run hash fields: the streak's first 401 (Redis time) and its length. A poll streak and a start
# streak are kept apart, so a start that struggled does not shorten the first poll's window.
SINCE, COUNT = "unauthorized_since", "unauthorized"
POLL, START = "poll", "start"
_PREFIX = {POLL: "", START: "start_"}


@dataclass(frozen=True)
class Streak:
    since: float
    now: float
    count: int

    @property
    def age(self) -> float:
        return self.now - self.since


def clear_fields(run: dict[str, str]) -> dict[str, str]:
    """Fields that end a poll streak after a success (none when there is no streak, so the
    common poll writes nothing more)."""
    return {SINCE: "", COUNT: "0"} if run.get(SINCE) else {}


async def note(
    r: aioredis.Redis, run: dict[str, str], exc: Unauthorized, phase: str
) -> Streak | None:
    """Count one 401/403 for `run` and keep the tenant's notice (one per provider per gate
    period), with its operational event for the subscriptions that asked for it. None when the
    run is gone."""
    VENDOR_UNAUTHORIZED.labels(run["provider"], phase).inc()
    notice = {
        "type": NOTICE,
        "provider": run["provider"],
        "run_id": run["id"],
        "status_code": exc.status_code,
        "reason": f"{run['provider']} answered {exc.status_code} to the relay's credentials "
        f"({phase}); runs keep retrying: check the connection's API key",
        "at": time.time(),
    }
    result = await bind(r).note_unauthorized(
        keys=[
            keys.run(run["id"]),
            keys.notice_gate(run["tenant"], f"{NOTICE}:{run['provider']}"),
            keys.tenant_notices(run["tenant"]),
        ],
        args=[
            _PREFIX[phase],
            notices.GATE_SECONDS,
            dumps(notice),
            notices.KEPT,
            *notices.event_args(notice, events.notice_body(notice), run["tenant"]),
        ],
    )
    if not result:
        return None
    since, now, count = result
    return Streak(since=float(since), now=float(now), count=int(count))
