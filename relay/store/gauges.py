"""The api's Prometheus gauges, read from Redis at scrape time (relay/metrics.py has the workers'
counters): queue depths and readiness, work set aside, dead letters awaiting recovery,
subscriptions by state, tracked runs by status, for the environment's tenants and those whose
API keys were made through the admin API. Each read is a ZCARD/ZCOUNT/SCARD or one pipelined
HMGET over a bounded set, and the snapshot is cached for a few seconds so several scrapers cost
no more than one."""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from relay.metrics import TRACE_SPANS_DROPPED
from relay.store import keys, memory_guard

log = structlog.get_logger("relay.metrics")


QUEUES = {
    "start": keys.DUE_START,
    "poll": keys.DUE_POLL,
    "deliver": keys.DUE_DELIVER,
    "watch": keys.DUE_WATCH,
    "chores": keys.DUE_CHORES,
}
TRACKED_SAMPLE_LIMIT = 5000
CACHE_SECONDS = 5.0


@dataclass
class Snapshot:
    at: float = 0.0
    depth: dict[str, int] = field(default_factory=dict)
    ready: dict[str, int] = field(default_factory=dict)
    oldest_ready_age: dict[str, float] = field(default_factory=dict)
    runs_total: int = 0
    active: dict[str, int] = field(default_factory=dict)
    tracked_by_status: dict[tuple[str, str], int] = field(default_factory=dict)
    tracked_complete: bool = True
    subs: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    set_aside: dict[str, int] = field(default_factory=dict)
    budget_backlog: dict[str, float] = field(default_factory=dict)
    scrape_seconds: float = 0.0
    used_memory: int = 0
    maxmemory: int = 0
    ok: bool = True


#: The most API keys made at run time read per scrape (the operator makes them, one per tenant or
#: a few: far below this).
ADMIN_KEYS_READ = 10000


async def admin_tenants(r: aioredis.Redis) -> set[str]:
    """The tenants of the API keys made through the admin API (relay/tenancy/apikeys.py): the
    gauges count them beside the environment's tenants."""
    ids = await r.zrange(keys.API_KEYS, 0, ADMIN_KEYS_READ - 1)
    if not ids:
        return set()
    pipe = r.pipeline(transaction=False)
    for key_id in ids:
        pipe.hget(keys.api_key(key_id), "tenant")
    return {tenant for tenant in await pipe.execute() if tenant}


async def read_snapshot(
    r: aioredis.Redis, tenants: Iterable[str], budgets: Iterable[str]
) -> Snapshot:
    started = time.perf_counter()
    now = time.time()
    snap = Snapshot(at=now)
    tenants = sorted(set(tenants) | set(await admin_tenants(r)))
    budgets = sorted(set(budgets))
    pipe = r.pipeline(transaction=False)
    for key in QUEUES.values():
        pipe.zcard(key)
        pipe.zcount(key, "-inf", now)
        pipe.zrange(key, 0, 0, withscores=True)
        pipe.zcard(keys.poison(key))
    for tenant in tenants:
        pipe.zcard(keys.tenant_runs(tenant))
        pipe.smembers(keys.tenant_subs(tenant))
    for name in budgets:
        pipe.get(keys.budget(name))
    out = await pipe.execute()
    it = iter(out)
    for name in QUEUES:
        snap.depth[name] = int(next(it))
        snap.ready[name] = int(next(it))
        first = next(it)
        score = float(first[0][1]) if first else None
        snap.oldest_ready_age[name] = max(0.0, now - score) if score is not None else 0.0
        if score is not None and score > now:
            snap.oldest_ready_age[name] = 0.0
        snap.set_aside[name] = int(next(it))
    sub_ids: list[str] = []
    for _ in tenants:
        snap.runs_total += int(next(it))
        sub_ids += sorted(next(it))
    for name in budgets:
        free = next(it)
        snap.budget_backlog[name] = max(0.0, float(free) - now) if free else 0.0
    snap.active = {"starting": snap.depth["start"], "tracking": snap.depth["poll"]}

    if sub_ids:
        pipe = r.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hget(keys.subscription(sub_id), "enabled")
            pipe.zcard(keys.sub_dead(sub_id))
        rows = await pipe.execute()
        enabled = disabled = 0
        for i in range(0, len(rows), 2):
            if rows[i] is None:
                continue
            if rows[i] == "1":
                enabled += 1
            else:
                disabled += 1
            snap.dead_letters += int(rows[i + 1])
        snap.subs = {"enabled": enabled, "disabled": disabled}
    else:
        snap.subs = {"enabled": 0, "disabled": 0}

    tracked = await r.zrange(keys.DUE_POLL, 0, TRACKED_SAMPLE_LIMIT - 1)
    snap.tracked_complete = snap.depth["poll"] <= TRACKED_SAMPLE_LIMIT
    if tracked:
        pipe = r.pipeline(transaction=False)
        for run_id in tracked:
            pipe.hmget(keys.run(run_id), ["provider", "status"])
        tally: Tally[tuple[str, str]] = Tally()
        for provider, status in await pipe.execute():
            if provider:
                tally[(provider, status or "unknown")] += 1
        snap.tracked_by_status = dict(tally)
    memory = await memory_guard.read(r)
    snap.used_memory, snap.maxmemory = memory.used, memory.maxmemory
    snap.scrape_seconds = time.perf_counter() - started
    return snap


class StoreCollector(Collector):
    """Turns the latest `Snapshot` into metric families (the registry calls `collect`
    synchronously, so the endpoint refreshes the snapshot first, asynchronously)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot(ok=False)

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        up = GaugeMetricFamily("relay_store_up", "1 if the last Redis read for metrics worked.")
        up.add_metric([], 1.0 if s.ok else 0.0)
        yield up
        if not s.ok:
            return
        depth = GaugeMetricFamily(
            "relay_queue_depth", "Members of a due set (queued or leased work).", labels=["queue"]
        )
        ready = GaugeMetricFamily(
            "relay_queue_ready",
            "Members due now and not leased by a worker (waiting for a worker).",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "relay_queue_oldest_ready_age_seconds",
            "How long the oldest ready member has been due (0 when none is).",
            labels=["queue"],
        )
        aside = GaugeMetricFamily(
            "relay_jobs_set_aside_now",
            "Members of a due set set aside after RELAY_POISON_AFTER failures in a row, waiting "
            "for a refresh or `relay jobs retry`.",
            labels=["kind"],
        )
        for name in QUEUES:
            depth.add_metric([name], s.depth.get(name, 0))
            ready.add_metric([name], s.ready.get(name, 0))
            age.add_metric([name], s.oldest_ready_age.get(name, 0.0))
            aside.add_metric([name], s.set_aside.get(name, 0))
        yield from (depth, ready, age, aside)

        runs = GaugeMetricFamily("relay_runs", "Runs known to the relay (every state).")
        runs.add_metric([], s.runs_total)
        yield runs
        active = GaugeMetricFamily(
            "relay_runs_active", "Runs being started or polled, by state.", labels=["state"]
        )
        for state, n in sorted(s.active.items()):
            active.add_metric([state], n)
        yield active
        tracked = GaugeMetricFamily(
            "relay_runs_tracked",
            "Runs being polled, by provider and last vendor status "
            f"(counted over at most {TRACKED_SAMPLE_LIMIT} runs).",
            labels=["provider", "status"],
        )
        for (provider, status), n in sorted(s.tracked_by_status.items()):
            tracked.add_metric([provider, status], n)
        yield tracked
        complete = GaugeMetricFamily(
            "relay_runs_tracked_complete",
            "1 if relay_runs_tracked counted every polled run, 0 if it hit its limit.",
        )
        complete.add_metric([], 1.0 if s.tracked_complete else 0.0)
        yield complete

        subs = GaugeMetricFamily("relay_subscriptions", "Subscriptions by state.", labels=["state"])
        for state, n in sorted(s.subs.items()):
            subs.add_metric([state], n)
        yield subs
        dead = GaugeMetricFamily(
            "relay_dead_letters", "Dead-lettered deliveries waiting to be recovered."
        )
        dead.add_metric([], s.dead_letters)
        yield dead
        backlog = GaugeMetricFamily(
            "relay_vendor_budget_backlog_seconds",
            "How far ahead the shared vendor budget is booked (0 = idle; near 1 = saturated).",
            labels=["budget"],
        )
        for name, value in sorted(s.budget_backlog.items()):
            backlog.add_metric([name], value)
        yield backlog
        used = GaugeMetricFamily("relay_redis_used_memory_bytes", "Redis used_memory.")
        used.add_metric([], s.used_memory)
        limit = GaugeMetricFamily(
            "relay_redis_maxmemory_bytes", "Redis maxmemory (0: no limit set)."
        )
        limit.add_metric([], s.maxmemory)
        yield from (used, limit)
        took = GaugeMetricFamily(
            "relay_metrics_scrape_seconds", "Time the last Redis read for metrics took."
        )
        took.add_metric([], s.scrape_seconds)
        yield took


class ApiMetrics:
    """The api's registry: the store gauges plus the process' own."""

    def __init__(self, tenants: Iterable[str], budgets: Iterable[str]) -> None:
        self.tenants = sorted(set(tenants))
        self.budgets = sorted(set(budgets))
        self.registry = CollectorRegistry(auto_describe=False)
        self.store = StoreCollector()
        self.registry.register(self.store)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(TRACE_SPANS_DROPPED)  # the api's own, beside the workers'
        self._lock = asyncio.Lock()

    async def refresh(self, r: aioredis.Redis) -> None:
        async with self._lock:
            if time.time() - self.store.snapshot.at < CACHE_SECONDS and self.store.snapshot.ok:
                return
            try:
                self.store.snapshot = await read_snapshot(r, self.tenants, self.budgets)
            except Exception as exc:  # Redis down: report relay_store_up 0, not a 500.
                log.warning("metrics_store_read_failed", error=type(exc).__name__)
                self.store.snapshot = Snapshot(at=time.time(), ok=False)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST
