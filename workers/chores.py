"""Background chores: work that is truly proportional to the data (a deleted subscription's
month of parked deliveries, a re-enabled one's parked lanes), done after the object has left the
API, in bounded batches: one script per batch (`BATCH` lanes or dead letters), the chore due
again at once while more is left (DESIGN.md invariant 9). A crash between batches loses nothing:
the chore keeps its lease and comes back when it passes."""

from __future__ import annotations

import structlog

from relay.store import keys
from relay.store import subscriptions as subs_store
from relay.store.client import bind
from relay.store.leases import Lease, release, unheld
from workers.context import Context

log = structlog.get_logger("relay.chores")

#: Lanes (or dead letters) per script: each lane holds at most a run's events, and each of its
#: runs may start its retention (a few dozen commands), so one batch is about 2-3 ms of Redis
#: (bench/scale.py), the same at any size.
BATCH = 50


async def run_chore(ctx: Context, member: str, lease: Lease | None = None) -> None:
    lease = lease or unheld(keys.DUE_CHORES, member)
    kind, _, rest = member.partition("|")
    sub_id = rest.partition("|")[0]
    scripts = bind(ctx.redis)
    if kind == "purge":
        more = await scripts.purge_sub(
            keys=subs_store.purge_keys(sub_id),
            args=[sub_id, BATCH, member, lease.token],
        )
    elif kind == "resume":
        more = await scripts.resume_sub(
            keys=subs_store.resume_keys(sub_id),
            args=[sub_id, BATCH, member, lease.token],
        )
    else:
        log.warning("chore_unknown", member=member)
        await release(ctx.pipe, lease, None)
        return
    if more == 0:
        log.info("chore_done", chore=kind, subscription_id=sub_id)
