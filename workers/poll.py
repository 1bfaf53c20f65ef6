"""The `poll` job: one read of one run. Each run has a single due entry in `relay:due:poll`, so
there is one chain per run however many workers run; the job ends by setting the next due time
(only if the entry still exists, so a deleted run is never brought back)."""

from __future__ import annotations

import time

import structlog

from relay import tracing
from relay.delivery import events
from relay.delivery.recorder import RunGone, record
from relay.metrics import POLLS, TRANSITIONS, child
from relay.store import keys, snapshots
from relay.store.client import dumps
from relay.store.leases import Lease, bump, leased_run, release, unheld
from relay.store.runs import COMPLETED, TRACKING, TRACKING_FAILED
from relay.vendors import auth as vendor_auth
from relay.vendors import budget, connections
from relay.vendors.base import NotFound, RateLimited, Transient, Unauthorized
from relay.vendors.polling import backoff, next_poll, phase_start
from workers import ahead
from workers.context import Context

log = structlog.get_logger("relay.poll")


async def _again(ctx: Context, lease: Lease, delay: float, **fields: str) -> None:
    """Write back what the poll saw and set the next due time, in one script: only while this
    worker still holds the run's lease, only if the run is still scheduled (a run stopped
    meanwhile stays stopped), and with fields only if no newer observation was recorded."""
    await release(
        ctx.pipe,
        lease,
        delay,
        run_key=keys.run(lease.member),
        observed=bool(fields),
        **fields,
    )


async def take_slots(ctx: Context, leases: list[Lease]) -> list[Lease]:
    """The poll pump's step between a claim and its jobs (workers/ahead.py): the send slots of
    every claimed run that will call the vendor, each counted on its run's `polls`. A run the
    claim found stopped, gone or past its window is handed back as it was: its job ends it."""
    now = time.time()
    return await ahead.prepare(
        ctx,
        leases,
        lambda run: run.get("state") == TRACKING and not _window_over(ctx, run, now),
        field="polls",
    )


def _window_over(ctx: Context, run: dict[str, str], now: float) -> bool:
    """The run's tracking window ran out (`tracking_since`: when a resumed run, refreshed after
    tracking_failed, was tracked again): the poll gives up instead of calling the vendor."""
    since = float(run.get("tracking_since") or run["created_at"])
    return now - since > ctx.settings.tracking_window


async def poll_run(ctx: Context, run_id: str, lease: Lease | None = None) -> None:
    lease = lease or unheld(keys.DUE_POLL, run_id)
    run = await leased_run(ctx.pipe, lease)
    if run is None or run.get("state") != TRACKING:
        await release(ctx.pipe, lease, None)
        return
    structlog.contextvars.bind_contextvars(run_id=run_id, tenant=run["tenant"])
    if tracing.ENABLED:  # a child of the run's trace (relay/tracing.py)
        attributes = {"relay.run.id": run_id, "relay.provider": run["provider"]}
        with tracing.job_span("relay.poll", run, attributes):
            await _poll(ctx, run, lease)
        return
    await _poll(ctx, run, lease)


def _count(provider: str, outcome: str) -> None:
    """A poll's outcome: counted, and on its span when tracing is on."""
    child(POLLS, provider, outcome).inc()
    if tracing.ENABLED:
        tracing.note({"relay.poll.outcome": outcome})


async def _poll(ctx: Context, run: dict[str, str], lease: Lease) -> None:
    r, s = ctx.redis, ctx.settings
    run_id = run["id"]
    if _window_over(ctx, run, time.time()):
        _count(run["provider"], "window_expired")
        await _give_up(ctx, run, lease, "tracking_window", "the tracking window ran out")
        return
    way = ahead.of(lease)
    if way is None:  # not prepared with its claim (`take_slots`): its slot taken alone
        (way,) = await ahead.take(ctx, [(lease, run)], "polls")
    provider = way.provider
    if way.wait is None:  # the run was stopped or taken over meanwhile: nothing to write
        return
    wait = await budget.answer(provider.credential, way.wait)
    if wait:
        _count(provider.name, "budget_deferred")
        await _again(ctx, lease, wait)
        return
    try:
        seen = await provider.fetch(
            ctx.vendor_http, run.get("agent_id") or "", run["upstream_run_id"], counted=True
        )
    except RateLimited as exc:
        _count(provider.name, "rate_limited")
        await _again(ctx, lease, exc.retry_after)
        return
    except NotFound:
        _count(provider.name, "not_found")
        misses = await bump(ctx.pipe, lease, keys.run(run_id), "not_found")
        if misses is None:
            return
        if misses >= s.not_found_limit:
            await _give_up(ctx, run, lease, "not_found", "the vendor no longer knows this run")
        else:
            await _again(ctx, lease, backoff(misses, s.poll_min_interval, s.poll_max_interval))
        return
    except Unauthorized as exc:
        # Credentials, not the run: back off and give up only after a window of nothing else.
        _count(provider.name, "unauthorized")
        streak = await vendor_auth.note(r, run, exc, vendor_auth.POLL)
        if streak is None:
            await release(ctx.pipe, lease, None)
        elif streak.age >= s.unauthorized_window:
            message = f"the vendor refused the relay's credentials for {streak.age:.0f}s"
            await _give_up(ctx, run, lease, "unauthorized", message)
        else:
            delay = backoff(streak.count, s.poll_min_interval, s.poll_max_interval)
            log.warning("poll_unauthorized", run_id=run_id, streak=streak.count, delay=delay)
            await _again(ctx, lease, delay)
        return
    except Transient as exc:
        _count(provider.name, "transient")
        errors = await bump(ctx.pipe, lease, keys.run(run_id), "errors")
        if errors is None:
            return
        delay = backoff(errors, s.poll_min_interval, s.poll_max_interval)
        log.info("poll_retry", run_id=run_id, reason=exc.reason, delay=round(delay, 2))
        await _again(ctx, lease, delay)
        return

    now = time.time()
    changed = seen.status != run.get("status")
    _count(provider.name, "changed" if changed else "unchanged")
    if tracing.ENABLED:
        tracing.note({"relay.poll.status": seen.status, "relay.poll.transition": changed})
    terminal = provider.is_terminal(seen.status)
    since, learned = _phase(ctx, run, provider, seen.status, seen.snapshot, changed, now)
    phase = None if terminal else await ctx.phases.get(ctx.pipe, provider.name, seen.status)
    delay, interval = next_poll(
        now,
        since,
        phase,
        float(run.get("poll_interval") or 0),
        changed,
        s.poll_min_interval,
        s.poll_max_interval,
    )
    fields = {
        **snapshots.fields(run, seen.snapshot, digest=seen.digest, referenced=changed or terminal),
        "poll_interval": repr(interval),
        "errors": "0",
        "not_found": "0",
        "last_polled_at": repr(now),
        **vendor_auth.clear_fields(run),
    }
    if changed:
        fields["status_since"] = "" if since is None else repr(since)
    if not (changed or terminal):
        await _again(ctx, lease, delay, **fields)
        return
    # A change, or a terminal status: the transition, the run's fields and its schedule (next
    # poll, or none) in one script. A status the run had before is recorded as a duplicate: the
    # run moves, no second webhook.
    fields.update(last_change_at=repr(now), state=COMPLETED if terminal else TRACKING)
    try:
        outcome, evt = await record(
            r,
            run,
            event_type=events.STATUS_CHANGED,
            status_key=seen.status,
            now=now,
            terminal=terminal,
            status=seen.status,
            snapshot=seen.snapshot,
            run_fields=fields,
            lease=lease,
            next_poll=None if terminal else delay,
            observed=True,
            auto=ctx.pipe,
            # the phase that ended, learned in the same script (for 'ok' and 'dup' only)
            learn=None if learned is None else (run["status"], learned),
            subs_read=way.subs_read,
        )
    except RunGone:
        await release(ctx.pipe, lease, None)
        return
    if outcome == "ok":
        child(TRANSITIONS, provider.name).inc()
    elif outcome == "old":
        # A newer observation was recorded meanwhile (only a job run by hand, beside the claimed
        # chain, can get here): this one changes nothing; the chain goes on.
        await _again(ctx, lease, delay)
    log.info(
        "transition",
        run_id=run_id,
        tenant=run["tenant"],
        event_id=evt,
        status=seen.status,
        outcome=outcome,
    )


def _phase(
    ctx: Context,
    run: dict[str, str],
    provider: connections.TenantVendor,
    status: str,
    snapshot: dict[str, object],
    changed: bool,
    now: float,
) -> tuple[float | None, float | None]:
    """When the run's current status began (None: not known closely enough to aim by), and the
    length of the phase that just ended, to learn (None: nothing to learn)."""
    if not changed:
        return (float(run["status_since"]) if run.get("status_since") else None), None
    last = run.get("last_polled_at")
    previous_poll = float(last) if last and run.get("status") else None
    since, known = phase_start(
        provider.changed_at(snapshot), previous_poll, now, ctx.settings.poll_min_interval
    )
    if not known:
        return None, None
    began, previous = run.get("status_since"), run.get("status")
    if not (began and previous and provider.follows(previous, status)):
        return since, None
    length = since - float(began)
    return since, (length if 0 < length <= ctx.settings.tracking_window else None)


async def _give_up(
    ctx: Context, run: dict[str, str], lease: Lease, reason: str, message: str
) -> None:
    error = {"error": reason, "message": message}
    try:
        await record(
            ctx.redis,
            run,
            event_type=events.TRACKING_FAILED,
            status_key=TRACKING_FAILED,
            now=time.time(),
            terminal=True,
            run_fields={"state": TRACKING_FAILED, "error": dumps(error)},
            data_extra={"error": error},
            lease=lease,
        )
    except RunGone:
        await release(ctx.pipe, lease, None)
    log.info("tracking_failed", run_id=run["id"], tenant=run["tenant"], reason=reason)
