"""The `poll` job: one read of one run. Each run has a single due entry in `relay:due:poll`, so
there is one chain per run however many workers run; the job ends by setting the next due time
(only if the entry still exists, so a deleted run is never brought back)."""

from __future__ import annotations

import time
from itertools import chain

import structlog

from relay import budget, connections, events, keys, vendor_auth
from relay.metrics import POLLS, TRANSITIONS
from relay.polling import backoff, jitter, next_interval
from relay.providers.base import NotFound, RateLimited, Transient, Unauthorized
from relay.recorder import RunGone, record
from relay.store.autopipe import Command
from relay.store.client import dumps
from relay.store.runs import COMPLETED, TRACKING, TRACKING_FAILED
from workers.context import Context

log = structlog.get_logger("relay.poll")


async def _again(ctx: Context, run_id: str, delay: float, **fields: str) -> None:
    """Write back what the poll saw, then set the next due time (only if the run is still
    scheduled: XX, so a run stopped meanwhile stays stopped). Both go out in order on one
    connection; only this run's single poll chain writes these fields."""
    commands: list[Command] = []
    if fields:
        commands.append(("HSET", keys.run(run_id), *chain.from_iterable(fields.items())))
    commands.append(("ZADD", keys.DUE_POLL, "XX", time.time() + delay, run_id))
    await ctx.pipe.execute(*commands)


async def poll_run(ctx: Context, run_id: str) -> None:
    r, s = ctx.redis, ctx.settings
    # Through the auto-pipeline: the reads of the runs claimed together go out together.
    (found,) = await ctx.pipe.execute(("HGETALL", keys.run(run_id)))
    run: dict[str, str] | None = found or None
    if run is None or run.get("state") != TRACKING:
        await r.zrem(keys.DUE_POLL, run_id)
        return
    structlog.contextvars.bind_contextvars(run_id=run_id, tenant=run["tenant"])
    now = time.time()
    # `tracking_since`: when a resumed run (refresh after tracking_failed) was tracked again.
    if now - float(run.get("tracking_since") or run["created_at"]) > s.tracking_window:
        POLLS.labels(run["provider"], "window_expired").inc()
        await _give_up(ctx, run, "tracking_window", "the tracking window ran out")
        return
    provider = await connections.provider_for(ctx, run["tenant"], run["provider"])
    wait = await budget.acquire(ctx.pipe, provider.credential, s.vendor_rate)
    if wait:
        POLLS.labels(provider.name, "budget_deferred").inc()
        await _again(ctx, run_id, wait)
        return
    await ctx.pipe.execute(("HINCRBY", keys.run(run_id), "polls", 1))
    try:
        seen = await provider.fetch(
            ctx.vendor_http, run.get("agent_id") or "", run["upstream_run_id"]
        )
    except RateLimited as exc:
        POLLS.labels(provider.name, "rate_limited").inc()
        await _again(ctx, run_id, exc.retry_after)
        return
    except NotFound:
        POLLS.labels(provider.name, "not_found").inc()
        misses = await r.hincrby(keys.run(run_id), "not_found", 1)
        if misses >= s.not_found_limit:
            await _give_up(ctx, run, "not_found", "the vendor no longer knows this run")
        else:
            await _again(ctx, run_id, backoff(misses, s.poll_min_interval, s.poll_max_interval))
        return
    except Unauthorized as exc:
        # Credentials, not the run: back off and give up only after a window of nothing else.
        POLLS.labels(provider.name, "unauthorized").inc()
        streak = await vendor_auth.note(r, run, exc, vendor_auth.POLL)
        if streak is None:
            await r.zrem(keys.DUE_POLL, run_id)
        elif streak.age >= s.unauthorized_window:
            message = f"the vendor refused the relay's credentials for {streak.age:.0f}s"
            await _give_up(ctx, run, "unauthorized", message)
        else:
            delay = backoff(streak.count, s.poll_min_interval, s.poll_max_interval)
            log.warning("poll_unauthorized", run_id=run_id, streak=streak.count, delay=delay)
            await _again(ctx, run_id, delay)
        return
    except Transient as exc:
        POLLS.labels(provider.name, "transient").inc()
        errors = await r.hincrby(keys.run(run_id), "errors", 1)
        delay = backoff(errors, s.poll_min_interval, s.poll_max_interval)
        log.info("poll_retry", run_id=run_id, reason=exc.reason, delay=round(delay, 2))
        await _again(ctx, run_id, delay)
        return

    now = time.time()
    changed = seen.status != run.get("status")
    POLLS.labels(provider.name, "changed" if changed else "unchanged").inc()
    terminal = provider.is_terminal(seen.status)
    interval = next_interval(
        float(run.get("poll_interval") or 0), changed, s.poll_min_interval, s.poll_max_interval
    )
    fields = {
        "snapshot": dumps(seen.snapshot),
        "poll_interval": repr(interval),
        "errors": "0",
        "not_found": "0",
        "last_polled_at": repr(now),
        **vendor_auth.clear_fields(run),
    }
    if changed:
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
            )
        except RunGone:
            await r.zrem(keys.DUE_POLL, run_id)
            return
        if outcome == "ok":
            TRANSITIONS.labels(provider.name).inc()
        log.info(
            "transition",
            run_id=run_id,
            tenant=run["tenant"],
            event_id=evt,
            status=seen.status,
            outcome=outcome,
        )
    if terminal:
        pipe = r.pipeline(transaction=True)
        pipe.hset(keys.run(run_id), mapping={**fields, "state": COMPLETED})
        pipe.zrem(keys.DUE_POLL, run_id)
        await pipe.execute()
        return
    await _again(ctx, run_id, jitter(interval, 0.05), **({} if changed else fields))


async def _give_up(ctx: Context, run: dict[str, str], reason: str, message: str) -> None:
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
        )
    except RunGone:
        pass
    await ctx.redis.zrem(keys.DUE_POLL, run["id"])
    log.info("tracking_failed", run_id=run["id"], tenant=run["tenant"], reason=reason)
