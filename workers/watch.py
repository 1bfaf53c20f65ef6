"""The `watch` job: list an Autoposting agent's runs and start tracking the ones it started since
the watch was created (by the run's `startedAt` against the watch's `created_at`, so a run started
before the first successful listing, e.g. during a vendor outage, is tracked too).

The list is paged (`limit`/`offset`) while the vendor's `total` says there is more and the pages
hold runs not seen yet (newest first: a page of only known or older runs ends the listing). A
vendor that ignores `offset` (the same runs come back) cannot be paged through: the runs beyond
the first page are counted in a metric and told to the tenant in a notice, not skipped silently."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from relay import tracing
from relay.delivery import events
from relay.ids import new_id
from relay.metrics import WATCH_LISTING_TRUNCATED
from relay.store import keys
from relay.store.client import bind
from relay.store.leases import Lease, release, unheld
from relay.store.lifecycle import TOMB
from relay.store.runs import TRACKING, create_run, upstream_key
from relay.tenancy import notices
from relay.vendors import budget, connections
from relay.vendors.base import Observed, RateLimited, VendorError
from relay.vendors.connections import TenantVendor
from workers.context import Context

log = structlog.get_logger("relay.watch")


PAGE_SIZE = 100  # the most the simulator (and, by its guides, the vendor) pages out at once
MAX_PAGES = 50  # per listing; more new runs than this at once is reported as truncated
SLOT_TRIES = 5
TRUNCATED_NOTICE = events.WATCH_LISTING_TRUNCATED
SET_ASIDE_NOTICE = events.WATCH_SET_ASIDE
TRUNCATED_NOTICE_EVERY = 3600.0


def started_at(run: Observed) -> float | None:
    """The vendor's `startedAt` as unix seconds, or None when it is missing or unreadable."""
    raw = run.snapshot.get("startedAt")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


def is_new(run: Observed, created_at: float, first_listing: bool) -> bool:
    """Started at or after the watch's creation (to the millisecond the vendor reports; vendor and
    relay clocks are assumed in step). A run with no readable start time counts as new unless it
    is in the first listing (the old baseline rule)."""
    started = started_at(run)
    if started is None:
        return not first_listing
    return started >= math.floor(created_at * 1000) / 1000


async def _slot(ctx: Context, provider: TenantVendor, watch_id: str, tenant: str) -> bool:
    for _ in range(SLOT_TRIES):
        rate = ctx.settings.vendor_rate
        wait = await budget.acquire(ctx.pipe, provider.credential, rate, watch_id, tenant)
        if not wait:
            return True
        await asyncio.sleep(wait)
    return False


@dataclass
class Listing:
    runs: list[Observed]
    total: int | None
    truncated: bool  # the vendor has more (`total`) than it would page out


async def list_all(
    ctx: Context,
    provider: TenantVendor,
    watch_id: str,
    tenant: str,
    agent_id: str,
    done_with: set[str],
    created_at: float,
) -> Listing:
    """Page through an agent's runs while there is more and the pages still hold runs that are
    neither in `done_with` nor older than `created_at`."""
    runs: dict[str, Observed] = {}
    total: int | None = None
    for page_no in range(MAX_PAGES):
        # The first page's slot is the job's own; each further page takes one of its own. No slot
        # within a few seconds: the whole listing is tried again later (a partial one would
        # mark its first pages seen, and the next listing would stop there).
        if page_no and not await _slot(ctx, provider, watch_id, tenant):
            raise RateLimited(1.0, status_code=None)
        page = await provider.list_runs(
            ctx.vendor_http, agent_id, offset=len(runs), limit=PAGE_SIZE
        )
        total = page.total
        fresh = [run for run in page.runs if run.upstream_run_id not in runs]
        runs.update((run.upstream_run_id, run) for run in fresh)
        if not page.runs or total is None or len(runs) >= total:
            return Listing(list(runs.values()), total, truncated=False)
        if not fresh:
            return Listing(list(runs.values()), total, truncated=True)
        if all(
            run.upstream_run_id in done_with or not is_new(run, created_at, first_listing=False)
            for run in fresh
        ):
            return Listing(list(runs.values()), total, truncated=False)
    return Listing(list(runs.values()), total, truncated=True)


async def _without_tombstones(
    ctx: Context, watch: dict[str, str], runs: list[Observed]
) -> list[Observed]:
    """Runs whose relay run expired or was erased leave a tombstone on their upstream key (and
    leave the seen-set): the watch does not track them again, nor remember them again."""
    if not runs:
        return runs
    pipe = ctx.redis.pipeline(transaction=False)
    for run in runs:
        up = run.upstream_run_id
        pipe.get(upstream_key(watch["tenant"], watch["provider"], watch["agent_id"], up))
    found = await pipe.execute()
    return [run for run, value in zip(runs, found, strict=True) if value != TOMB]


async def watch_agent(ctx: Context, watch_id: str, lease: Lease | None = None) -> None:
    r, s = ctx.redis, ctx.settings
    lease = lease or unheld(keys.DUE_WATCH, watch_id)
    watch = await r.hgetall(keys.watch(watch_id))
    if not watch:
        await release(ctx.pipe, lease, None)
        return
    provider = await connections.provider_for(ctx, watch["tenant"], watch["provider"])
    wait = await budget.acquire(
        ctx.pipe, provider.credential, s.vendor_rate, watch_id, watch["tenant"]
    )
    if wait:
        await release(ctx.pipe, lease, wait)
        return
    seen_key = keys.watch_seen(watch_id)
    known = await r.smembers(seen_key)
    created_at = float(watch["created_at"])
    try:
        listing = await list_all(
            ctx, provider, watch_id, watch["tenant"], watch["agent_id"], known, created_at
        )
    except RateLimited as exc:
        await release(ctx.pipe, lease, exc.retry_after)
        return
    except VendorError as exc:
        # With the release, and only if the watch still exists (a DELETE during the listing
        # stays deleted).
        await release(
            ctx.pipe, lease, s.watch_interval, run_key=keys.watch(watch_id), last_error=exc.reason
        )
        return
    runs = listing.runs
    if listing.truncated:
        await _truncated(ctx, watch, len(runs), listing.total)
    first_listing = watch.get("baselined") != "1"
    include_existing = watch.get("include_existing") == "1"
    fresh = [run for run in runs if run.upstream_run_id not in known]
    fresh = await _without_tombstones(ctx, watch, fresh)
    now = time.time()
    for run in fresh:
        if not include_existing and not is_new(run, created_at, first_listing):
            continue
        run_id = new_id("run")
        record = {
            "id": run_id,
            "tenant": watch["tenant"],
            "provider": watch["provider"],
            "agent_id": watch["agent_id"],
            "upstream_run_id": run.upstream_run_id,
            "state": TRACKING,
            "status": "",
            "sequence": "0",
            "source": "watch",
            "watch_id": watch_id,
            "metadata": watch.get("metadata") or "{}",
            "created_at": repr(now),
            "updated_at": repr(now),
            "retention": repr(s.retention),
        }
        if tracing.ENABLED:  # a trace of its own (relay/tracing.py)
            attributes = {"relay.run.id": run_id, "relay.watch.id": watch_id}
            record.update(tracing.new_trace_fields("relay.run", attributes))
        created = await create_run(
            r,
            run=record,
            due_key=keys.DUE_POLL,
            due_at=now,
            idempotency_key=None,
            request_hash="",
            upstream_key=upstream_key(
                watch["tenant"], watch["provider"], watch["agent_id"], run.upstream_run_id
            ),
            watch_key=keys.watch(watch_id),
        )
        if created.outcome == "gone":
            log.info("watch_gone", watch_id=watch_id)
            return
        if created.outcome == "created":
            log.info("watch_tracked", watch_id=watch_id, run_id=run_id, tenant=watch["tenant"])
    # Only if the watch still exists: a DELETE during the listing must not be written back over.
    await bind(r).finish_listing(
        keys=[keys.watch(watch_id), seen_key, keys.DUE_WATCH, lease.leases],
        args=[
            watch_id,
            repr(now),
            str(len(runs)),
            repr(s.watch_interval),
            lease.token,
            *[run.upstream_run_id for run in fresh],
        ],
    )


async def _truncated(ctx: Context, watch: dict[str, str], listed: int, total: int | None) -> None:
    """The vendor reports more runs than it pages out: count it every time, tell the tenant once
    an hour per watch (the runs beyond what came back cannot be tracked by this watch)."""
    WATCH_LISTING_TRUNCATED.labels(watch["provider"]).inc()
    reason = (
        f"the vendor lists {total} runs for agent {watch['agent_id']} but pages out only "
        f"{listed}: runs beyond those are not tracked by this watch (track them by id)"
    )
    notice = {
        "type": TRUNCATED_NOTICE,
        "watch_id": watch["id"],
        "agent_id": watch["agent_id"],
        "listed": listed,
        "total": total,
        "reason": reason,
        "at": time.time(),
    }
    await notices.keep_once(
        ctx.redis,
        watch["tenant"],
        f"{TRUNCATED_NOTICE}:{watch['id']}",
        notice,
        events.notice_body(notice),
        ttl=TRUNCATED_NOTICE_EVERY,
    )
    log.warning("watch_listing_truncated", watch_id=watch["id"], listed=listed, total=total)


async def watch_set_aside(ctx: Context, watch_id: str, error: str) -> None:
    """The watch's listing failed RELAY_POISON_AFTER times in a row and was set aside (its error
    is on the watch): tell the tenant, once per hour per watch. `POST /v1/watches/{id}/refresh`
    (or `relay jobs retry`) brings it back."""
    watch = await ctx.redis.hgetall(keys.watch(watch_id))
    if not watch:
        return
    notice = {
        "type": SET_ASIDE_NOTICE,
        "watch_id": watch_id,
        "agent_id": watch.get("agent_id"),
        "reason": f"listing the agent's runs failed repeatedly and was set aside ({error}); "
        "POST /v1/watches/{id}/refresh tries again",
        "at": time.time(),
    }
    await notices.keep_once(
        ctx.redis,
        watch["tenant"],
        f"{SET_ASIDE_NOTICE}:{watch_id}",
        notice,
        events.notice_body(notice),
        ttl=TRUNCATED_NOTICE_EVERY,
    )
    log.error("watch_set_aside", watch_id=watch_id, tenant=watch["tenant"])
