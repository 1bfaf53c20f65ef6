"""Where a run's keys die (DESIGN.md invariant 8): retention after the run ended, erase at once.

The clock starts in the script that makes it true: a run has ended (completed, start_failed,
tracking_failed, stopped) AND none of its deliveries is still pending. RECORD_EVENT (the terminal
transition), DELIVERED and FINISH_HEAD (the last delivery of a lane) call `lc_settle`
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

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from relay.ids import new_id
from relay.store import keys
from relay.store.client import bind
from relay.store.scripts import DEFAULT_RETENTION, GRACE_MS, TOMB

__all__ = [
    "DEFAULT_RETENTION",
    "GRACE_MS",
    "TOMB",
    "erase_run",
    "retained",
    "sweep_due",
]


@dataclass(frozen=True)
class Swept:
    """What one sweep did: runs removed, and deliveries parked on a disabled subscription that
    expired with their run's retention (by tenant, for the metric)."""

    runs: int = 0
    expired: dict[str, int] = field(default_factory=dict)


async def sweep_due(
    r: aioredis.Redis,
    now: float,
    tombstone_ttl: float,
    *,
    attempt_log: int,
    notice_gate: float,
    notices_kept: int,
    batch: int = 200,
    recheck: float = 3600.0,
    event_stamp: str = "",
    event_ttl: float = 7 * 86400,
    lane_run: str = "ping",
) -> Swept:
    """Sweep up to `batch` runs whose retention passed (one script each, bounded by the run's
    events and subscriptions); `recheck` is when a run still delivering is looked at again. The
    expiry of parked deliveries is logged in the attempt log (`attempt_log` long) and told to
    the tenant in a notice (gated by `notice_gate` seconds, `notices_kept` kept) and, through
    the same gate, in a `deliveries.expired` operational event to the subscriptions that asked
    for it (stamped `event_stamp`, the ISO time of its body; kept `event_ttl` seconds, queued on
    the run-less lane `lane_run`)."""
    due = await r.zrangebyscore(keys.RETENTION, "-inf", now, start=0, num=batch)
    script = bind(r).sweep_run
    runs = 0
    expired: dict[str, int] = {}
    for run_id in due:
        swept, gone, tenant = await script(
            keys=[],
            args=[
                run_id,
                recheck,
                int(tombstone_ttl * 1000),
                attempt_log,
                int(notice_gate),
                notices_kept,
                new_id("evt"),
                event_stamp,
                int(event_ttl),
                lane_run,
            ],
        )
        runs += int(swept)
        if int(gone):
            expired[tenant] = expired.get(tenant, 0) + int(gone)
    return Swept(runs, expired)


async def erase_run(r: aioredis.Redis, run_id: str, tombstone_ttl: float) -> bool:
    """Delete the run and everything about it now; False if there was no such run."""
    script = bind(r).erase_run
    return bool(await script(keys=[], args=[run_id, int(tombstone_ttl * 1000)]))


def retained(run: dict[str, str], now: float) -> bool:
    """False once the run's retention passed (its hash may outlive it until the sweep)."""
    until = run.get("retain_until")
    return not until or float(until) > now
