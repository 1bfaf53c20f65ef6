"""A claimed job's way to the vendor, taken for the whole claim before its jobs run: the step the
poll and start pumps take between a claim and its jobs (workers/pump.py `prepare`).

Every claimed run that will call the vendor gets its send slot in one script with its lease
check and its request counts (lua/held_slots.lua), and its tenant's subscriptions read in the
same round trip, for the transition the job most likely records. One script per claim instead
of one per job, and no job waits on a round trip of its own before its request
(bench/polling.py: a sixth of a polling worker's CPU; the issue 27 note has the figures). A job
not prepared this way (run by hand, or its claim's step failed) takes its own through `take`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from relay.store import keys, subscriptions
from relay.store.leases import Lease
from relay.store.slots import Held
from relay.vendors import budget, connections
from workers.context import Context


@dataclass(frozen=True)
class Ahead:
    """A job's way to the vendor, taken before it runs: its tenant's vendor client, its send
    slot's answer (relay/vendors/budget.py `acquire_held`: None when the lease was lost or the
    run is gone) and the read of its tenant's subscriptions, sent in the same round trip for the
    transition the job most likely records (relay/delivery/recorder.py `subs_read`)."""

    provider: connections.TenantVendor
    wait: float | None
    subs_read: asyncio.Future[list[Any]]


async def prepare(
    ctx: Context,
    leases: list[Lease],
    calls_vendor: Callable[[dict[str, str]], bool],
    *,
    field: str,
    cached: bool = True,
) -> list[Lease]:
    """Each lease whose run (as its claim read it) `calls_vendor` handed back with its `Ahead`,
    the request counted on the run's `field` ('' for none) when its slot is taken; the others
    as they were claimed: their jobs end them as before. `cached`: as `take`."""
    jobs = [(lease, lease.run) for lease in leases if lease.run and calls_vendor(lease.run)]
    if not jobs:
        return leases
    ways = await take(ctx, jobs, field, cached)
    taken = dict(zip((lease.member for lease, _ in jobs), ways, strict=True))
    return [
        replace(lease, ahead=taken[lease.member]) if lease.member in taken else lease
        for lease in leases
    ]


def of(lease: Lease) -> Ahead | None:
    """What the claim's step prepared for this job (None: nothing, it takes its own)."""
    return lease.ahead if isinstance(lease.ahead, Ahead) else None


async def take(
    ctx: Context, jobs: list[tuple[Lease, dict[str, str]]], field: str, cached: bool = True
) -> list[Ahead]:
    """The `Ahead` of each (lease, run) of `jobs`, in order: its vendor client, one
    subscription read per tenant, and the slots in one script. The vendor clients come from the
    worker's short-lived copy when `cached` (relay/vendors/vendor_cache.py: a poll may use a key
    up to its TTL old), else are read now (a start, which charges the account: it uses the
    connection as it is); the reads are made together, each pair once."""
    pairs = {(run["tenant"], run["provider"]) for _, run in jobs}
    cache = ctx.vendors if cached else None
    providers = {}
    if cache is not None:
        providers = {pair: held for pair in pairs if (held := cache.get(*pair)) is not None}
    missing = [pair for pair in pairs if pair not in providers]
    if missing:  # read together, each pair once (connections.py `provider_for`)
        found = await asyncio.gather(
            *(connections.provider_for(ctx, t, name, cache) for t, name in missing)
        )
        providers.update(zip(missing, found, strict=True))
    subs_reads = {t: subscriptions.read_ids(ctx.pipe, t) for t, _ in pairs}
    sends = []
    for lease, run in jobs:
        provider = providers[(run["tenant"], run["provider"])]
        usage_key, usage_ttl = provider.usage
        line = keys.budget(provider.credential)
        sends.append(Held(lease, line, run["tenant"], keys.run(run["id"]), usage_key, usage_ttl))
    waits = await budget.acquire_held(ctx.pipe, sends, ctx.settings.vendor_rate, field=field)
    return [
        Ahead(providers[(run["tenant"], run["provider"])], wait, subs_reads[run["tenant"]])
        for (_, run), wait in zip(jobs, waits, strict=True)
    ]
