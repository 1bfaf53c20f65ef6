"""The `start` job: one vendor start call per relay run, safe to repeat after a crash because the
vendor sees the same idempotency key every time."""

from __future__ import annotations

import time

import structlog

from relay import tracing
from relay.delivery import events
from relay.delivery.recorder import RunGone, record
from relay.ids import vendor_idempotency_key
from relay.store import keys, snapshots
from relay.store.client import dumps, loads
from relay.store.leases import Lease, bump, leased_run, release, unheld
from relay.store.runs import COMPLETED, START_FAILED, STARTING, TRACKING, upstream_key
from relay.vendors import auth as vendor_auth
from relay.vendors import budget
from relay.vendors.base import RateLimited, Rejected, Transient, Unauthorized, VendorError
from relay.vendors.polling import backoff, next_poll
from workers import ahead
from workers.context import Context

log = structlog.get_logger("relay.start")


async def start_run(ctx: Context, run_id: str, lease: Lease | None = None) -> None:
    lease = lease or unheld(keys.DUE_START, run_id)
    run = await leased_run(ctx.pipe, lease)
    if run is None or run.get("state") != STARTING:
        await release(ctx.pipe, lease, None)
        return
    if tracing.ENABLED:  # a child of the run's trace (relay/tracing.py)
        attributes = {"relay.run.id": run_id, "relay.provider": run["provider"]}
        with tracing.job_span("relay.start", run, attributes):
            await _start(ctx, run, lease)
        return
    await _start(ctx, run, lease)


async def take_start_slots(ctx: Context, leases: list[Lease]) -> list[Lease]:
    """The start pump's step between a claim and its jobs (workers/ahead.py): the send slot of
    every claimed run still to start, with the tenant's connection read as it is now (a start
    charges the account). A run the claim found gone or no longer starting is handed back as
    it was: its job releases it."""
    return await ahead.prepare(
        ctx, leases, lambda run: run.get("state") == STARTING, field="", cached=False
    )


def _outcome(outcome: str) -> None:
    if tracing.ENABLED:
        tracing.note({"relay.start.outcome": outcome})


async def _start(ctx: Context, run: dict[str, str], lease: Lease) -> None:
    r, s = ctx.redis, ctx.settings
    run_id = run["id"]
    bound = log.bind(run_id=run_id, tenant=run["tenant"], provider=run["provider"])
    way = ahead.of(lease)
    if way is None:  # not prepared with its claim (`take_start_slots`): its slot taken alone
        (way,) = await ahead.take(ctx, [(lease, run)], "", cached=False)
    provider = way.provider
    if way.wait is None:  # the lease was lost or the run deleted meanwhile: nothing to write
        return
    wait = await budget.answer(provider.credential, way.wait)
    if wait:
        _outcome("budget_deferred")
        await release(ctx.pipe, lease, wait)
        return
    payload = loads(run.get("input"), {})
    key = payload.get("idempotencyKey") or vendor_idempotency_key(run_id)
    try:
        started = await provider.start(ctx.vendor_http, payload, key, counted=True)
    except RateLimited as exc:
        _outcome("rate_limited")
        await release(ctx.pipe, lease, exc.retry_after)
        return
    except Transient as exc:
        _outcome("transient")
        errors = await bump(ctx.pipe, lease, keys.run(run_id), "errors")
        if errors is None:
            return  # stopped or taken over meanwhile
        delay = backoff(errors, s.poll_min_interval, s.poll_max_interval)
        bound.warning("start_retry", reason=exc.reason, delay=round(delay, 2))
        await release(ctx.pipe, lease, delay)
        return
    except Unauthorized as exc:
        # Credentials, not the request: retry with back-off within RELAY_UNAUTHORIZED_WINDOW,
        # then start_failed (credentials=true).
        streak = await vendor_auth.note(r, run, exc, vendor_auth.START)
        if streak is not None and streak.age < s.unauthorized_window:
            delay = backoff(streak.count, s.poll_min_interval, s.poll_max_interval)
            _outcome("unauthorized")
            bound.warning("start_unauthorized", streak=streak.count, delay=round(delay, 2))
            await release(ctx.pipe, lease, delay)
            return
        await _start_failed(ctx, run, exc, lease)
        return
    except (Rejected, VendorError) as exc:
        await _start_failed(ctx, run, exc, lease)
        return
    now = time.time()
    run["upstream_run_id"] = started.upstream_run_id
    terminal = provider.is_terminal(started.status)
    # The start's answer is the run's first observation, so the first poll is aimed like any
    # poll after a change (relay/vendors/polling.py): just after the first phase's learned end,
    # not at the minimum interval, where it would most likely see the same status again. A run
    # the relay starts then costs one GET per later status (bench/polling.py --start).
    vendor_time = provider.changed_at(started.snapshot)
    since = None if vendor_time is None else min(now, vendor_time)
    phase = None if terminal else await ctx.phases.get(ctx.pipe, provider.name, started.status)
    delay, interval = next_poll(
        now, since, phase, 0.0, True, s.poll_min_interval, s.poll_max_interval
    )
    # One step: the upstream id and its index, the first transition (or, when the vendor answered
    # with a run the tenant already has an event for, the run moved on without one), dropping the
    # start entry and scheduling the first poll. A crash before it just repeats the idempotent
    # start; there is no point after the start where the run is neither starting nor polled.
    # When the vendor answered with a run the tenant already tracks in another relay run (its
    # idempotencyKey was used before), the same step joins that run instead (lua/includes/join.lua).
    try:
        outcome, _ = await record(
            r,
            run,
            event_type=events.STATUS_CHANGED,
            status_key=started.status,
            now=now,
            terminal=terminal,
            status=started.status,
            snapshot=started.snapshot,
            run_fields={
                "upstream_run_id": started.upstream_run_id,
                "state": COMPLETED if terminal else TRACKING,
                **snapshots.fields(run, started.snapshot),
                "last_change_at": repr(now),
                "poll_interval": repr(interval),
                "errors": "0",
                # When the first status began, so its length can be learned and the poll that
                # follows aimed (relay/vendors/polling.py); '' when the vendor does not say.
                "status_since": "" if since is None else repr(since),
            },
            lease=lease,
            next_poll=None if terminal else delay,
            upstream=upstream_key(
                run["tenant"], run["provider"], run.get("agent_id") or "", started.upstream_run_id
            ),
            auto=ctx.pipe,
            subs_read=way.subs_read,
        )
    except RunGone:
        await release(ctx.pipe, lease, None)
        return
    _outcome(outcome if outcome == "joined" else "started")
    if tracing.ENABLED:
        tracing.note({"relay.upstream_run_id": started.upstream_run_id})
    bound.info(
        "run_joined" if outcome == "joined" else "run_started",
        upstream_run_id=started.upstream_run_id,
        idempotent=started.idempotent,
        status=started.status,
    )


async def _start_failed(ctx: Context, run: dict[str, str], exc: VendorError, lease: Lease) -> None:
    _outcome("start_failed")
    error: dict[str, object] = {"status_code": exc.status_code, "message": exc.reason}
    if isinstance(exc, Rejected):
        error.update(error=exc.error, message=exc.message, **exc.details)
    elif isinstance(exc, Unauthorized):
        error.update(
            error="vendor_unauthorized",
            credentials=True,
            message="the vendor refused the relay's credentials",
        )
    else:
        error.setdefault("error", "vendor_error")
    now = time.time()
    try:
        await record(
            ctx.redis,
            run,
            event_type=events.START_FAILED,
            status_key=START_FAILED,
            now=now,
            terminal=True,
            run_fields={"state": START_FAILED, "error": dumps(error)},
            data_extra={"error": error},
            lease=lease,
        )
    except RunGone:
        await release(ctx.pipe, lease, None)
    log.info(
        "start_failed",
        run_id=run["id"],
        tenant=run["tenant"],
        status_code=exc.status_code,
        error=error.get("error"),
    )
