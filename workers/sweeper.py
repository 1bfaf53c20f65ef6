"""The retention sweep: every worker runs it every RELAY_SWEEP_INTERVAL seconds.

Redis expires a run's data keys by itself (relay/store/lifecycle.py); what cannot expire per
member (index entries, dead letters, attempt-log entries, notices, a watch's seen-set member) is
removed here, driven by `relay:retention`. Each run's sweep is one idempotent script, so any
number of workers may sweep at once.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.exceptions import RedisError

from relay.store.lifecycle import sweep_due
from workers.context import Context

log = structlog.get_logger("relay.sweep")


async def sweep_once(ctx: Context) -> int:
    """Sweep every run whose retention passed; returns how many."""
    total = 0
    while True:
        swept = await sweep_due(ctx.redis, time.time(), ctx.settings.tombstone_ttl)
        total += swept
        if swept == 0:
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
