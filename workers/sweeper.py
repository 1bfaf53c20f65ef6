"""The retention sweep: every worker runs it every RELAY_SWEEP_INTERVAL seconds.

Redis expires a run's data keys by itself (relay/store/lifecycle.py); what cannot expire per
member (index entries, dead letters, attempt-log entries, notices, a watch's seen-set member) is
removed here, driven by `relay:retention`, and deliveries parked on a disabled subscription expire
here with their run's retention (counted in `relay_deliveries_expired`). Each run's sweep is
one idempotent script, so any number of workers may sweep at once.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.exceptions import RedisError

from relay.delivery import events
from relay.metrics import DELIVERIES_EXPIRED
from relay.store.lifecycle import sweep_due
from relay.tenancy import notices
from workers.context import Context

log = structlog.get_logger("relay.sweep")


async def sweep_once(ctx: Context) -> int:
    """Sweep every run whose retention passed, in batches; returns how many."""
    total = 0
    s = ctx.settings
    while True:
        swept = await sweep_due(
            ctx.redis,
            time.time(),
            s.tombstone_ttl,
            attempt_log=s.attempt_retention,
            notice_gate=notices.GATE_SECONDS,
            notices_kept=notices.KEPT,
            recheck=min(s.retention, 3600.0),
            event_stamp=events.iso(time.time()),
            event_ttl=notices.EVENT_TTL,
            lane_run=notices.RUNLESS,
        )
        for tenant, count in swept.expired.items():
            DELIVERIES_EXPIRED.inc(count)
            log.warning("deliveries_expired", tenant=tenant, deliveries=count)
        total += swept.runs
        if swept.runs == 0:
            return total


async def sweep_forever(ctx: Context) -> None:
    while True:
        try:
            swept = await sweep_once(ctx)
            if swept:
                log.info("retention_swept", runs=swept)
        except (RedisError, OSError) as exc:
            log.warning("sweep_failed", error=type(exc).__name__)
        await asyncio.sleep(ctx.settings.sweep_interval)
