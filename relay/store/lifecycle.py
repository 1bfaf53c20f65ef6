"""Where a run's keys die (DESIGN.md invariant 8): retention after the run ended, erase at once.

The clock starts in the script that makes it true: a run has ended (completed, start_failed,
tracking_failed, stopped) AND none of its deliveries is still pending. RECORD_EVENT (the terminal
transition) and FINISH_HEAD (the last delivery of a lane) call `lc_settle`
(relay/store/lua/includes/lifecycle.lua), as do stop (DELETE) and deleting a subscription (whose
lanes are then moot). From then on:

- every data key of the run (events list, event hashes with their bodies and snapshots,
  delivery records, the callback subscription with its attempts/dead/pairs) carries PEXPIREAT
  `retain_until`: Redis deletes them itself, exactly on time;
- the run hash carries `retain_until` (readers treat the run as gone from then) and expires a
  grace later, so the sweep can still read what to unindex;
- `relay:retention` (zset, score = retain_until) drives the sweep (SWEEP_RUN, run by every
  worker's sweeper loop), which removes what cannot expire per member: the tenant's run indexes
  (by provider and status too), the due sets, the subscription's dead letters and attempt-log
  entries and the tenant's notices older than the retention, the watch's seen-set member; it
  turns the upstream de-duplication key of an agent's run into a tombstone ('tomb',
  `RELAY_TOMBSTONE_TTL`: a watch listing the agent must not track it again), deletes any other
  run's, and deletes the run hash.

A delivery queued again for an ended run (redeliver, recover) calls `lc_reopen`: the keys lose
their expiry until that delivery settles too, so retention never cuts a pending delivery short.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.client import bind
from relay.store.scripts import DEFAULT_RETENTION, GRACE_MS, TOMB

__all__ = [
    "DEFAULT_RETENTION",
    "GRACE_MS",
    "TOMB",
    "erase_run",
    "retained",
    "settle_run",
    "sweep_due",
]


async def settle_run(r: aioredis.Redis, run_id: str) -> bool:
    """Start the run's retention clock if it ended and its deliveries settled."""
    return bool(await bind(r).settle_run(keys=[], args=[run_id]))


async def sweep_due(r: aioredis.Redis, now: float, tombstone_ttl: float, batch: int = 200) -> int:
    """Sweep up to `batch` runs whose retention passed; returns how many were swept."""
    due = await r.zrangebyscore(keys.RETENTION, "-inf", now, start=0, num=batch)
    swept = 0
    script = bind(r).sweep_run
    for run_id in due:
        swept += int(await script(keys=[], args=[run_id, now, int(tombstone_ttl * 1000)]))
    return swept


async def erase_run(r: aioredis.Redis, run_id: str, tombstone_ttl: float) -> bool:
    """Delete the run and everything about it now; False if there was no such run."""
    script = bind(r).erase_run
    return bool(await script(keys=[], args=[run_id, int(tombstone_ttl * 1000)]))


def retained(run: dict[str, str], now: float) -> bool:
    """False once the run's retention passed (its hash may outlive it until the sweep)."""
    until = run.get("retain_until")
    return not until or float(until) > now
