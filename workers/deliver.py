"""The `deliver` job: send the head event of one (subscription, run) lane.

Only the head of a lane is ever sent and only one worker holds a lane at a time (the pump's
lease), so a subscriber sees a run's events in sequence: a later event waits until the earlier one
succeeded or was dead-lettered. Lanes are independent, so a slow subscriber delays nothing else,
and a per-subscription cap keeps one hanging endpoint from taking every slot of a worker.
"""

from __future__ import annotations

import random
import time
from functools import lru_cache
from typing import Any

import httpx
import structlog

from relay import metrics, tracing
from relay.delivery import events, rate_limit, signing, sub_headers
from relay.delivery.http_client import request_capped
from relay.delivery.http_errors import BlockedDestination
from relay.delivery.retry import delivery_delay, parse_retry_after
from relay.secret_box import unseal
from relay.store import keys, lanes
from relay.store.autopipe import Command, run_script
from relay.store.client import bind, dumps
from relay.store.leases import Lease, release, unheld
from relay.store.packing import unpack
from relay.store.subscriptions import CALLBACK, active_secrets
from relay.tenancy import notices, usage
from workers.context import Context

log = structlog.get_logger("relay.deliver")

EXCERPT_BYTES = 1024
#: The notice kept when a subscription is disabled (by a 410 or RELAY_DISABLE_AFTER of failures);
#: its keep-once gate is `subscription.disabled:<sub id>`. The same gate lets one operational
#: event of that type out to the tenant's other subscriptions that asked for it.
DISABLED_NOTICE = events.SUBSCRIPTION_DISABLED
#: The longest a lane waits for a delivery slot of its subscription (it is woken as soon as one
#: frees; this only bounds a wake lost to a race or a crash).
BUSY_SAFETY = 30.0


#: The most events of one lane a claim sends back to back (lua/delivered.lua keeps the lease
#: from one to the next): it bounds how long one lane holds a pump slot.
BACK_TO_BACK = 16

#: A lane's head as lua/lane_head.lua or lua/delivered.lua hands it over: event id, stored body
#: (None: the event is gone), this subscriber's attempts so far.
Head = tuple[str, str | None, str | None]


async def deliver_lane(ctx: Context, member: str, lease: Lease | None = None) -> None:
    lease = lease or unheld(keys.DUE_DELIVER, member)
    sub_id, _, run_id = member.partition("|")
    structlog.contextvars.bind_contextvars(subscription_id=sub_id, run_id=run_id)
    r, s = ctx.redis, ctx.settings
    lane = keys.lane(sub_id, run_id)
    scripts = bind(r)
    # One script for the head, its body, its attempt count and the subscription, sent in one
    # round trip with the other lanes the pump claimed in this turn.
    waiting = keys.sub_waiting(sub_id)
    # With tracing on, the run's trace context comes back too (its 6th value).
    run_key = keys.run(run_id) if tracing.ENABLED else ""
    event_id, body_text, attempts_raw, sub_flat, wait_score, *trace = await run_script(
        ctx.pipe,
        scripts.lane_head,
        [lane, keys.subscription(sub_id), waiting, run_key],
        [sub_id, member],
    )
    if event_id is None:
        await scripts.settle_lane(
            keys=[lane, keys.DUE_DELIVER, keys.sub_pairs(sub_id), lease.leases],
            args=[member, run_id, lease.token],
        )
        return
    sub = dict(zip(sub_flat[::2], sub_flat[1::2], strict=True)) or None
    if sub is None:
        # The subscription is gone: its purge (workers/chores.py) removes this lane with the
        # others and counts their deliveries off their runs.
        await release(ctx.pipe, lease, None)
        return
    if sub.get("enabled") != "1":
        await scripts.park_lane(
            keys=[keys.subscription(sub_id), keys.DUE_DELIVER, lease.leases],
            args=[member, lease.token],
        )
        return
    # A lane woken for a slot another delivery to this subscription just freed takes it, over
    # this worker's cap if need be (the subscription's total in flight does not grow by it).
    woken = wait_score is not None and float(wait_score) < 0
    if not woken and ctx.in_flight[sub_id] >= s.delivery_per_subscription:
        await _wait_for_slot(ctx, sub_id, waiting, lease)
        return
    parent = (
        dict(zip(tracing.FIELDS, (v or "" for v in trace[0]), strict=True))
        if trace and tracing.ENABLED
        else None
    )
    ctx.in_flight[sub_id] += 1
    try:
        head: Head | None = (event_id, body_text, attempts_raw)
        # Bounded by BACK_TO_BACK: the lane's next events while lua/delivered.lua keeps the lease.
        for turn in range(BACK_TO_BACK):
            if head is None:
                break
            # rate_limit (relay/delivery/rate_limit.py): no free slot soon → back on the schedule
            # for just before its reserved one; no attempt is counted and no delivery slot is
            # held while it waits.
            limit = rate_limit.parse(sub.get(rate_limit.FIELD))
            if limit is not None:
                wait = await rate_limit.reserve(ctx.pipe, sub_id, limit, member)
                if wait:
                    await release(ctx.pipe, lease, wait)
                    return
            go_on = limit is None and turn + 1 < BACK_TO_BACK
            if parent is None:  # (no span: one coroutine less on every resume of the POST)
                head = await _attempt(ctx, sub, run_id, lease, head, go_on)
            else:
                head = await _attempt_traced(ctx, sub, run_id, lease, head, parent, go_on)
    finally:
        ctx.in_flight[sub_id] -= 1
        if ctx.in_flight[sub_id] <= 0:
            del ctx.in_flight[sub_id]


async def _attempt_traced(
    ctx: Context,
    sub: dict[str, str],
    run_id: str,
    lease: Lease,
    head: Head,
    parent: dict[str, str],
    go_on: bool,
) -> Head | None:
    """One attempt in its span (tracing on): a child of the run's trace, the parent its webhook
    names."""
    with tracing.job_span(
        "relay.deliver",
        parent,
        {
            "relay.webhook.id": head[0],
            "relay.subscription.id": sub["id"],
            "relay.run.id": run_id,
            "http.request.method": "POST",
            **tracing.url_attributes(sub["url"]),
        },
        kind=tracing.CLIENT,
    ):
        return await _attempt(ctx, sub, run_id, lease, head, go_on)


@lru_cache(maxsize=256)
def _opened(event_id: str, stored: str) -> tuple[bytes, float | None]:
    """An event's body as sent, and when it was recorded, from its stored form (compressed when
    that pays, relay/store/packing.py). Kept for the last 256 events (a few MB at most with
    Citedy's largest bodies): an event goes to every subscription of its tenant that wants it,
    each its own lane and attempt, and the body is the same bytes each time (keyed by the
    stored text as well, so nothing stale is ever sent)."""
    text = unpack(stored)
    return text.encode(), metrics.event_time(text)


async def _wait_for_slot(ctx: Context, sub_id: str, waiting: str, lease: Lease) -> None:
    """This worker has every delivery slot it gives the subscription in use: the lane waits on
    the subscription's queue (lua/includes/wake.lua) until a delivery to it ends, or BUSY_SAFETY at
    most, instead of being claimed again every turn."""
    metrics.DELIVERY_SLOT_WAITS.inc()
    scripts = bind(ctx.redis)
    waits = [keys.DUE_DELIVER, lease.leases, waiting]
    await run_script(ctx.pipe, scripts.wait_lane, waits, [lease.member, lease.token, BUSY_SAFETY])
    if ctx.in_flight[sub_id] < ctx.settings.delivery_per_subscription:
        # One of this worker's deliveries to it ended meanwhile and may have found no lane to
        # wake yet: wake one now, or the freed slot would idle until the safety net.
        await run_script(ctx.pipe, scripts.wake_lane, waits, [])


async def _secrets(ctx: Context, sub: dict[str, str]) -> list[str]:
    key = ctx.settings.relay_encryption_key
    if sub.get("kind") == CALLBACK:
        stored = await ctx.redis.get(keys.tenant_callback_secret(sub["tenant"]))
        return [unseal(stored, key)] if stored else []
    return [unseal(sealed, key) for sealed in active_secrets(sub)]


async def _attempt(
    ctx: Context, sub: dict[str, str], run_id: str, lease: Lease, head: Head, go_on: bool
) -> Head | None:
    """Send `head` and record what came of it. Returns the lane's next head when the receiver
    took this one and lua/delivered.lua kept the lease for the next (`go_on`), else None. `sub`
    is updated in place when the subscription changed meanwhile."""
    r, s = ctx.redis, ctx.settings
    event_id, body_text, attempts_raw = head
    sub_id = sub["id"]
    member, token = lease.member, lease.token
    scripts = bind(r)
    if body_text is None:
        # The event is gone (its run was deleted): drop it from the lane, keep the order going.
        await scripts.finish_head(
            keys=lanes.finish_keys(sub_id, run_id, event_id),
            args=[
                event_id,
                time.time(),
                member,
                run_id,
                "dropped",
                0,
                "",
                "event gone",
                "0",
                token,
            ],
        )
        return None
    attempt = int(attempts_raw or 0) + 1
    body, created_at = _opened(event_id, body_text)
    secrets = await _secrets(ctx, sub)
    timestamp = int(time.time())
    headers = signing.webhook_headers(secrets, event_id, timestamp, body)
    if sub.get(sub_headers.FIELD):  # the subscription's own headers (relay/delivery/sub_headers.py)
        extra = sub_headers.unsealed(sub[sub_headers.FIELD], s.relay_encryption_key)
        headers = {**dict(extra), **headers}
    if tracing.ENABLED:  # outside the signature: this attempt's span is the receiver's parent
        headers = {**headers, **tracing.outgoing()}
    started = time.perf_counter()
    code: int | None = None
    excerpt = b""
    response_headers: Any = {}
    error: str | None = None
    try:
        code, excerpt, response_headers = await request_capped(
            ctx.deliver_http, "POST", sub["url"], body, headers, limit=EXCERPT_BYTES
        )
    except BlockedDestination:
        error = "destination refused: it resolves to a private or reserved address"
    except httpx.TimeoutException:
        error = f"timed out after {s.delivery_timeout:g}s"
    except httpx.HTTPError as exc:
        error = f"connection failed: {type(exc).__name__}"
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    now = time.time()
    ok = code is not None and 200 <= code < 300
    if code is not None and not ok:
        error = f"endpoint answered {code}"

    delay: float | None = None
    if ok:
        outcome = "succeeded"
    elif code == 410:
        outcome = "disabled"
    else:
        retry_after = None
        if code in (429, 503):
            retry_after = parse_retry_after(response_headers.get("retry-after"))
        delay = delivery_delay(attempt, s.retry_schedule, retry_after, s.retry_after_max)
        outcome = "dead" if delay is None else "retrying"
    if tracing.ENABLED:
        _traced(attempt, code, outcome, delay, error)
    metrics.observe_delivery(
        outcome=outcome,
        code=code,
        latency_s=latency_ms / 1000,
        attempt=attempt,
        created_at=created_at,
        now=now,
    )

    record = dumps(
        {
            # Unique, not secret (a tenant reads it in its own attempt log): 80 random bits
            # from the module's generator, which the OS seeded, without a syscall per attempt.
            "id": f"att_{random.getrandbits(80):020x}",
            "event_id": event_id,
            "run_id": run_id,
            "subscription_id": sub_id,
            "attempt": attempt,
            "at": now,
            "status_code": code,
            "latency_ms": latency_ms,
            "error": error,
            "outcome": outcome,
            "response_excerpt": excerpt[:512].decode("utf-8", "replace"),
        }
    )
    code_s = "" if code is None else str(code)
    about = {
        "event_id": event_id,
        "subscription_id": sub_id,
        "run_id": run_id,
        "attempt": attempt,
        "tenant": sub["tenant"],
    }
    if ok:
        # One step (lua/delivered.lua): log, count, finish the head, and maybe the next head.
        keys_ok = lanes.delivered_keys(sub_id, run_id, event_id, usage.key(sub["tenant"], now))
        args_ok = [
            event_id,
            repr(now),
            member,
            run_id,
            str(attempt),
            code_s,
            token,
            record,
            s.attempt_retention,
            usage.ttl_from_first_write(s.usage_days),
            "1" if go_on else "0",
            s.lease_seconds,
            sub_id,
            sub.get("updated_at", ""),
            "1" if sub.get("failing_since") else "0",
        ]
        done = await run_script(ctx.pipe, scripts.delivered, keys_ok, args_ok)
        sub.pop("failing_since", None)
        # (No bound logger per delivery: with info filtered out this line costs nothing.)
        log.info("delivered", **about, status_code=code, latency_ms=latency_ms)
        if not isinstance(done, list):
            return None
        next_id, next_body, next_attempts, fields = done
        if fields:
            sub.clear()
            sub.update(zip(fields[::2], fields[1::2], strict=True))
        return next_id, next_body, next_attempts
    bound = log.bind(**about)
    log_attempt: list[Command] = [
        ("LPUSH", keys.sub_attempts(sub_id), record),
        ("LTRIM", keys.sub_attempts(sub_id), 0, s.attempt_retention - 1),
    ]
    counts = usage.commands(sub["tenant"], {"deliveries": 1}, s.usage_days)
    await ctx.pipe.execute(*log_attempt, *counts)
    # The failure paths' keys (a delivery taken has its own, above).
    lane, waiting = keys.lane(sub_id, run_id), keys.sub_waiting(sub_id)
    retry_keys = [lane, keys.delivery(event_id, sub_id), keys.DUE_DELIVER, lease.leases, waiting]

    if outcome == "disabled":
        await _disable(ctx, sub, "the endpoint answered 410 Gone", now)
        metrics.SUBSCRIPTIONS_DISABLED.labels("gone").inc()
        # Kept at the head, parked (one step, under the lease): it waits until the subscription
        # is enabled again.
        await scripts.retry_head(
            keys=[*retry_keys, keys.subscription(sub_id)],
            args=[event_id, now, member, attempt, code_s, error or "", now, 0, token, "1"],
        )
        bound.warning("subscription_gone", status_code=code)
        return None
    failing_since = float(sub.get("failing_since") or 0)
    if not failing_since:
        await r.hsetnx(keys.subscription(sub_id), "failing_since", repr(now))
    elif now - failing_since >= s.disable_after:
        await _disable(ctx, sub, f"every delivery failed for {s.disable_after:g}s", now)
        metrics.SUBSCRIPTIONS_DISABLED.labels("failing").inc()
    if outcome == "dead":
        await scripts.finish_head(
            keys=lanes.finish_keys(sub_id, run_id, event_id),
            args=[event_id, now, member, run_id, "dead", attempt, code_s, error or "", "1", token],
        )
        bound.warning("dead_lettered", status_code=code, error=error)
        return None
    delay = delay or 0.0
    await scripts.retry_head(
        keys=retry_keys,
        args=[event_id, now, member, attempt, code_s, error or "", now + delay, delay, token],
    )
    bound.info("delivery_retry", status_code=code, error=error, delay=round(delay, 2))
    return None


async def _disable(ctx: Context, sub: dict[str, str], reason: str, now: float) -> None:
    """Disable the subscription and tell the tenant once: every delivery in flight when it
    crosses the line fails on its own and lands here, so the notice goes through the same
    keep-once gate as every other kind (one per subscription per gate period; enabling it again
    opens the gate, relay/ops/subscriptions.py)."""
    await ctx.redis.hset(
        keys.subscription(sub["id"]),
        mapping={"enabled": "0", "disabled_reason": reason, "disabled_at": repr(now)},
    )
    notice = {"type": DISABLED_NOTICE, "subscription_id": sub["id"], "reason": reason, "at": now}
    await notices.keep_once(
        ctx.redis,
        sub["tenant"],
        f"{DISABLED_NOTICE}:{sub['id']}",
        notice,
        events.notice_body(notice),
    )
    log.warning(
        "subscription_disabled", subscription_id=sub["id"], tenant=sub["tenant"], reason=reason
    )


def _traced(
    attempt: int, code: int | None, outcome: str, delay: float | None, error: str | None
) -> None:
    """What the attempt's span says (its webhook id, subscription and run are set at its start)."""
    found: dict[str, tracing.Value] = {
        "relay.delivery.attempt": attempt,
        "http.request.resend_count": attempt - 1,
        "relay.delivery.outcome": outcome,
    }
    if code is not None:
        found["http.response.status_code"] = code
    if delay is not None:
        found["relay.delivery.retry_delay"] = round(delay, 3)
    tracing.note(found)
    if outcome != "succeeded":
        kind = str(code) if code is not None else (error or "error").rpartition(": ")[2]
        if kind.startswith("timed out"):
            kind = "timeout"
        elif kind.startswith("destination refused"):
            kind = "destination_refused"
        tracing.failed(kind, error)
