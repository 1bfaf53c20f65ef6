"""The arq worker: its start-up builds the context and the pumps, its shutdown drains them.

arq hosts the process (signals, Redis connection, health key); the work itself is claimed from
the due-sets by the pumps so that every job is written atomically with the state that caused it
(see workers/pump.py). There is no cron job: every lane is scheduled by the script that fills it,
and no periodic job scans the keyspace.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import structlog
from arq.worker import Worker
from redis.exceptions import RedisError

from relay import collector, metrics, tracing
from relay.config import get_settings
from relay.logging import configure, register_secrets
from relay.store import keys
from relay.store.connection import arq_settings, connect
from relay.store.leases import record_key
from relay.store.memory_guard import warn_if_evicting
from relay.vendors.budget import metric_label
from workers import heartbeat
from workers.chores import run_chore
from workers.context import Context, build_context
from workers.deliver import deliver_lane
from workers.poll import poll_run, take_slots
from workers.pump import Pump
from workers.start import start_run, take_start_slots
from workers.sweeper import sweep_forever
from workers.watch import watch_agent, watch_set_aside

log = structlog.get_logger("relay.worker")
DRAIN_SECONDS = 20.0


def _run_key(member: str) -> str:
    """The record a member of a due set belongs to (a run id, `sub|run` for a lane, a watch id):
    where its error goes when it is set aside."""
    return record_key(member)


#: The poll pump claims at most every `poll_gather` seconds while it takes every member due:
#: polls falling due within it run together, so their Redis commands share round trips and their
#: answers loop turns, for at most this much more detection lag. It is a share of the minimum
#: poll interval, so the lag it may add stays small beside the shortest wait between two polls
#: of a run: 0.1 s at the default 2 s. Measured (bench/polling.py, 10,000 runs, 2 s minimum),
#: against the 20 ms it was: worker CPU per vendor request 0.338-0.351 -> 0.307-0.316 ms with 5 s
#: phases and 0.373-0.386 -> 0.327-0.346 ms with uneven ones, detection lag p50 0.35 -> 0.41-0.43
#: s. A 0.2 s gather gave 0.299 / 0.306 ms for 0.48-0.50 s of lag: past 0.1 s it buys little.
GATHER_SHARE = 0.05
#: However long the minimum interval, polls are not held back longer than this.
GATHER_MAX = 0.25


def poll_gather(min_interval: float) -> float:
    return min(GATHER_MAX, min_interval * GATHER_SHARE)


#: Starts in flight in one worker, and how long after a short claim the start pump waits so the
#: starts falling due meanwhile are claimed (and their slots taken) together. At 32 in flight and
#: no wait, a stream of starts was claimed one or two at a time, each claim and its slots a round
#: trip of their own, and the pump fell behind the requests (bench/polling.py --start, 10,000
#: runs at 750 a second: 0.361-0.372 -> 0.307-0.334 ms of worker CPU per vendor request, the
#: run 37-42 -> 35-36 s). The vendor budget still paces what reaches the vendor.
START_CONCURRENCY = 128
START_GATHER = 0.02


def build_pumps(c: Context) -> list[Pump]:
    s = c.settings
    common = {"lease": s.lease_seconds, "poison_after": s.poison_after, "run_key": _run_key}
    pumps = [
        Pump(
            "start",
            c.redis,
            keys.DUE_START,
            lambda lease: start_run(c, lease.member, lease),
            concurrency=START_CONCURRENCY,
            gather=START_GATHER,
            idle=0.05,
            runs=True,  # the run hash read in the claim (workers/start.py)
            pipe=c.pipe,  # claims go out with the starts' own commands
            prepare=lambda leases: take_start_slots(c, leases),  # the claim's slots in one script
            **common,  # type: ignore[arg-type]
        ),
        Pump(
            "poll",
            c.redis,
            keys.DUE_POLL,
            lambda lease: poll_run(c, lease.member, lease),
            concurrency=s.poll_concurrency,
            idle=0.05,
            runs=True,  # the run hash read in the claim (workers/poll.py)
            pipe=c.pipe,  # claims go out with the polls' own commands
            gather=poll_gather(s.poll_min_interval),
            prepare=lambda leases: take_slots(c, leases),  # the claim's slots in one script
            **common,  # type: ignore[arg-type]
        ),
        Pump(
            "deliver",
            c.redis,
            keys.DUE_DELIVER,
            lambda lease: deliver_lane(c, lease.member, lease),
            concurrency=s.delivery_concurrency,
            idle=0.01,
            **common,  # type: ignore[arg-type]
        ),
        Pump(
            "chores",
            c.redis,
            keys.DUE_CHORES,
            lambda lease: run_chore(c, lease.member, lease),
            concurrency=4,
            idle=0.5,
            **common,  # type: ignore[arg-type]
        ),
        Pump(
            "watch",
            c.redis,
            keys.DUE_WATCH,
            lambda lease: watch_agent(c, lease.member, lease),
            concurrency=4,
            idle=0.5,
            on_set_aside=lambda lease, error: watch_set_aside(c, lease.member, error),
            **common,  # type: ignore[arg-type]
        ),
    ]
    return [p for p in pumps if p.name in s.worker_pumps]


async def _beat_forever(pumps: list[Pump], stale_after: float, path: Path) -> None:
    """Touch the heartbeat only while every pump's loop keeps turning: a hung pump (its loop
    stuck on an await) fails `relay check` as a dead process does."""
    while True:
        heartbeat.beat_if_turning(pumps, stale_after, path)
        await asyncio.sleep(min(5.0, stale_after / 4))


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    configure(settings.log_format, settings.log_level)
    tracing.setup("worker")
    register_secrets(
        settings.citedy_api_key, settings.autoposting_api_key, *settings.api_keys().keys()
    )
    c = build_context(connect(settings.require_redis_url("worker"), timeout=5.0), settings)
    await warn_if_evicting(c.redis, "worker")
    pumps = build_pumps(c)
    ctx["relay"] = c
    ctx["pumps"] = pumps
    collector.settle()  # what start-up made frozen, young collections rarer (relay/collector.py)
    ctx["tasks"] = [asyncio.create_task(p.run(), name=f"pump-{p.name}") for p in pumps]
    ctx["tasks"].append(
        asyncio.create_task(
            _beat_forever(pumps, settings.pump_stale_after, settings.heartbeat_file),
            name="heartbeat",
        )
    )
    ctx["tasks"].append(asyncio.create_task(sweep_forever(c), name="retention-sweep"))
    for pump in pumps:
        metrics.IN_FLIGHT.labels(pump.name).set_function(lambda p=pump: p.in_flight)
    for provider in c.providers.values():
        metrics.BUDGET_RATE.labels(metric_label(provider.credential)).set(settings.vendor_rate)
    ctx["metrics_server"] = metrics.start_worker_server(settings.metrics_port)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop or asyncio
    log.info("worker_started", pumps=[p.name for p in pumps], loop=loop)


async def shutdown(ctx: dict[str, Any]) -> None:
    pumps: list[Pump] = ctx.get("pumps", [])
    await asyncio.gather(*(p.drain(DRAIN_SECONDS) for p in pumps))
    for task in ctx.get("tasks", []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    metrics.stop_worker_server(ctx.get("metrics_server"))
    tracing.shutdown()  # flush what is queued, a few seconds at most
    c: Context | None = ctx.get("relay")
    if c is not None:
        await c.aclose()
        await c.redis.aclose()
    log.info("worker_stopped")


async def start(ctx: dict[str, Any], run_id: str) -> None:
    """Run the start job for one run now (ops and tests; the pump does this on its own)."""
    await start_run(ctx["relay"], run_id)


async def poll(ctx: dict[str, Any], run_id: str) -> None:
    await poll_run(ctx["relay"], run_id)


async def deliver(ctx: dict[str, Any], lane: str) -> None:
    await deliver_lane(ctx["relay"], lane)


def worker_settings() -> dict[str, Any]:
    settings = get_settings()
    return {
        "functions": [start, poll, deliver],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": arq_settings(settings.require_redis_url("worker")),
        "handle_signals": True,
        "job_timeout": 60,
        "health_check_interval": 30,
        "max_jobs": 10,
        # arq only hosts the process: no job is ever enqueued on its queue (the pumps claim the
        # work), so its queue poll need not turn often (an idle worker's Redis cost: bench/idle.py).
        "poll_delay": 5.0,
    }


class ResilientWorker(Worker):
    """arq's worker ends its process on the first Redis error in its poll loop. Ours waits for
    Redis to come back instead: all state is in Redis, so there is nothing to do but wait, and
    the pumps (which back off on their own) resume with it."""

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            log.warning("redis_unavailable", error=type(exc).__name__)
            await asyncio.sleep(1.0)


def run() -> None:
    ResilientWorker(**worker_settings()).run()
