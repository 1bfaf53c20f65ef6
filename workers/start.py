"""The `start` job: one vendor start call per relay run, safe to repeat after a crash because the
vendor sees the same idempotency key every time."""

from __future__ import annotations

import time

import structlog

from relay import budget, connections, events, keys, vendor_auth
from relay.ids import vendor_idempotency_key
from relay.polling import backoff
from relay.providers.base import RateLimited, Rejected, Transient, Unauthorized, VendorError
from relay.recorder import RunGone, record
from relay.store.client import dumps, loads
from relay.store.runs import COMPLETED, START_FAILED, STARTING, TRACKING, get_run, upstream_key
from workers.context import Context

log = structlog.get_logger("relay.start")


async def start_run(ctx: Context, run_id: str) -> None:
    r, s = ctx.redis, ctx.settings
    run = await get_run(r, run_id)
    if run is None or run.get("state") != STARTING:
        await r.zrem(keys.DUE_START, run_id)
        return
    bound = log.bind(run_id=run_id, tenant=run["tenant"], provider=run["provider"])
    provider = await connections.provider_for(ctx, run["tenant"], run["provider"])
    wait = await budget.acquire(ctx.pipe, provider.credential, s.vendor_rate)
    if wait:
        await r.zadd(keys.DUE_START, {run_id: time.time() + wait})
        return
    payload = loads(run.get("input"), {})
    key = payload.get("idempotencyKey") or vendor_idempotency_key(run_id)
    try:
        started = await provider.start(ctx.vendor_http, payload, key)
    except RateLimited as exc:
        await r.zadd(keys.DUE_START, {run_id: time.time() + exc.retry_after})
        return
    except Transient as exc:
        errors = await r.hincrby(keys.run(run_id), "errors", 1)
        delay = backoff(errors, s.poll_min_interval, s.poll_max_interval)
        bound.warning("start_retry", reason=exc.reason, delay=round(delay, 2))
        await r.zadd(keys.DUE_START, {run_id: time.time() + delay})
        return
    except Unauthorized as exc:
        # Credentials, not the request: retry with back-off within RELAY_UNAUTHORIZED_WINDOW,
        # then start_failed (credentials=true).
        streak = await vendor_auth.note(r, run, exc, vendor_auth.START)
        if streak is not None and streak.age < s.unauthorized_window:
            delay = backoff(streak.count, s.poll_min_interval, s.poll_max_interval)
            bound.warning("start_unauthorized", streak=streak.count, delay=round(delay, 2))
            await r.zadd(keys.DUE_START, {run_id: time.time() + delay})
            return
        await _start_failed(ctx, run, exc)
        return
    except (Rejected, VendorError) as exc:
        await _start_failed(ctx, run, exc)
        return
    now = time.time()
    # The upstream id first: the event id derives from it, and a crash here just repeats the
    # (idempotent) start.
    pipe = r.pipeline(transaction=True)
    pipe.hset(keys.run(run_id), mapping={"upstream_run_id": started.upstream_run_id})
    pipe.set(
        upstream_key(
            run["tenant"], run["provider"], run.get("agent_id") or "", started.upstream_run_id
        ),
        run_id,
    )
    await pipe.execute()
    run["upstream_run_id"] = started.upstream_run_id
    terminal = provider.is_terminal(started.status)
    try:
        await record(
            r,
            run,
            event_type=events.STATUS_CHANGED,
            status_key=started.status,
            now=now,
            terminal=terminal,
            status=started.status,
            snapshot=started.snapshot,
            run_fields={
                "state": COMPLETED if terminal else TRACKING,
                "snapshot": dumps(started.snapshot),
                "last_change_at": repr(now),
                "poll_interval": repr(s.poll_min_interval),
                "errors": "0",
            },
        )
    except RunGone:
        await r.zrem(keys.DUE_START, run_id)
        return
    pipe = r.pipeline(transaction=True)
    if not terminal:
        pipe.zadd(keys.DUE_POLL, {run_id: now + s.poll_min_interval})
    pipe.zrem(keys.DUE_START, run_id)
    await pipe.execute()
    bound.info(
        "run_started",
        upstream_run_id=started.upstream_run_id,
        idempotent=started.idempotent,
        status=started.status,
    )


async def _start_failed(ctx: Context, run: dict[str, str], exc: VendorError) -> None:
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
        )
    except RunGone:
        pass
    await ctx.redis.zrem(keys.DUE_START, run["id"])
    log.info(
        "start_failed",
        run_id=run["id"],
        tenant=run["tenant"],
        status_code=exc.status_code,
        error=error.get("error"),
    )
