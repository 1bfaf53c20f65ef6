"""The `watch` job: list an Autoposting agent's runs and start tracking the ones it started since
the watch was created. Runs already present at the first listing are the baseline."""

from __future__ import annotations

import time

import structlog

from relay import budget, connections, keys
from relay.ids import new_id
from relay.providers.base import RateLimited, VendorError
from relay.store.runs import TRACKING, create_run, upstream_key
from relay.store.scripts import FINISH_LISTING
from workers.context import Context

log = structlog.get_logger("relay.watch")


def watch_seen(watch_id: str) -> str:
    return keys.watch(watch_id) + ":seen"


async def watch_agent(ctx: Context, watch_id: str) -> None:
    r, s = ctx.redis, ctx.settings
    watch = await r.hgetall(keys.watch(watch_id))
    if not watch:
        await r.zrem(keys.DUE_WATCH, watch_id)
        return
    provider = await connections.provider_for(ctx, watch["tenant"], watch["provider"])
    wait = await budget.acquire(ctx.pipe, provider.credential, s.vendor_rate)
    if wait:
        await r.zadd(keys.DUE_WATCH, {watch_id: time.time() + wait}, xx=True)
        return
    try:
        runs = await provider.list_runs(ctx.vendor_http, watch["agent_id"])
    except RateLimited as exc:
        await r.zadd(keys.DUE_WATCH, {watch_id: time.time() + exc.retry_after}, xx=True)
        return
    except VendorError as exc:
        await r.hset(keys.watch(watch_id), "last_error", exc.reason)
        await r.zadd(keys.DUE_WATCH, {watch_id: time.time() + s.watch_interval}, xx=True)
        return
    seen_key = watch_seen(watch_id)
    baseline = watch.get("baselined") != "1"
    known = await r.smembers(seen_key)
    fresh = [run for run in runs if run.upstream_run_id not in known]
    now = time.time()
    for run in fresh:
        if baseline and not watch.get("include_existing") == "1":
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
        }
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
        )
        if created.outcome == "created":
            log.info("watch_tracked", watch_id=watch_id, run_id=run_id, tenant=watch["tenant"])
    # Only if the watch still exists: a DELETE during the listing must not be written back over.
    await r.eval(
        FINISH_LISTING,
        3,
        keys.watch(watch_id),
        seen_key,
        keys.DUE_WATCH,
        watch_id,
        repr(now),
        str(len(runs)),
        repr(now + s.watch_interval),
        *[run.upstream_run_id for run in fresh],
    )
