"""Prometheus metrics.

Two sources, one naming scheme (`relay_*`):

- **Workers** count what they do in their hot paths (deliveries, polls, vendor budget waits) with
  in-process counters and histograms: no Redis round trip is added to any job. Each worker serves
  them with `prometheus_client`'s HTTP server on `RELAY_WORKER_METRICS_PORT` (default 9108, `0`
  turns it off); the Helm chart's worker ServiceMonitor scrapes that port.
- **The api** serves `GET /metrics` with gauges read from Redis at scrape time by
relay/store/gauges.py
  (queue depths and readiness, dead letters awaiting recovery, disabled subscriptions, tracked
  runs by status). Each read is a ZCARD/ZCOUNT/SCARD or one pipelined HMGET over a bounded set,
  and the snapshot is cached for a few seconds so several scrapers cost no more than one.

`/metrics` is unauthenticated, as Prometheus expects. It carries no tenant names, ids or URLs,
only counts; still, keep it off the public ingress (the chart's NetworkPolicy and ServiceMonitor
reach the pods directly).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

log = structlog.get_logger("relay.metrics")


class PlainHistogram:
    """A histogram of a hot path, counted in plain numbers and exposed by prometheus_client at
    scrape time (a collector in the default registry, as `HistogramMetricFamily`).

    Why not `prometheus_client.Histogram`: its `observe` takes a lock for the sum and another for
    the bucket, and walks the bounds in Python; a delivery reports three histograms, 3.6 us of
    its CPU (issue 27). Here an observation is a bisect and two additions, under the GIL (the
    jobs run on one thread; the scrape runs on the metrics server's and reads a copy, in which a
    bucket may be one observation ahead of the sum; both only grow). The same exposition as
    prometheus_client's (tests/test_metrics.py): `_bucket` (cumulative, `le`), `_count` and
    `_sum` per label set, less its `_created` lines. Bounded by the label values, a fixed
    handful (outcomes, status classes)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._bounds = [float(b) for b in buckets] + [float("inf")]
        self._les = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        #: Per label values: the count of each bucket (not cumulative), then the sum.
        self._series: dict[tuple[str, ...], list[float]] = {}
        if not self._labelnames:  # exposed at zero from the start, as prometheus_client does
            self._series[()] = [0.0] * (len(self._bounds) + 1)
        if registry is not None:
            registry.register(self)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self._bounds) + 1)
        series[bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, series in list(self._series.items()):
            copy = list(series)
            cumulative = accumulate(copy[:-1])
            family.add_metric(list(labels), list(zip(self._les, cumulative, strict=True)), copy[-1])
        yield family


# ---------------------------------------------------------------------------------------------
# Worker metrics (the default registry, served by the worker's metrics port)
# ---------------------------------------------------------------------------------------------

DELIVERIES_EXPIRED = Counter(
    "relay_deliveries_expired",
    "Deliveries parked on a disabled subscription that expired with their run's retention "
    "(each recorded as expired and told to the tenant in a notice).",
)
DELIVERIES = Counter(
    "relay_deliveries",
    "Delivery attempts by outcome (succeeded, retrying, dead, disabled, dropped) and the "
    "status class of the subscriber's answer (2xx..5xx, or 'error' when there was none).",
    ["outcome", "status_class"],
)
DELIVERY_LATENCY = PlainHistogram(
    "relay_delivery_latency_seconds",
    "Time for one signed POST to a subscriber, from send to answer (or failure).",
    ["status_class"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
)
DELIVERY_LAG = PlainHistogram(
    "relay_delivery_lag_seconds",
    "From the event being recorded to its successful delivery (includes retries).",
    buckets=(0.1, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600, 7200, 21600, 86400, 259200),
)
DELIVERY_ATTEMPTS = PlainHistogram(
    "relay_delivery_attempts",
    "Attempts a delivery took before it succeeded or was dead-lettered.",
    ["outcome"],
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15),
)
DEAD_LETTERED = Counter(
    "relay_dead_lettered",
    "Deliveries dead-lettered after the last retry (replay them with recover).",
)
SUBSCRIPTIONS_DISABLED = Counter(
    "relay_subscriptions_disabled",
    "Subscriptions the relay disabled: reason 'gone' (410) or 'failing' (every delivery failed "
    "for RELAY_DISABLE_AFTER).",
    ["reason"],
)
POLLS = Counter(
    "relay_polls",
    "Vendor polls by provider and outcome (changed, unchanged, rate_limited, not_found, "
    "unauthorized, transient, budget_deferred, window_expired).",
    ["provider", "outcome"],
)
VENDOR_UNAUTHORIZED = Counter(
    "relay_vendor_unauthorized",
    "Vendor 401/403 answers by provider and phase (start, poll): a credentials problem. Runs back "
    "off and give up only after RELAY_UNAUTHORIZED_WINDOW of nothing else.",
    ["provider", "phase"],
)
WATCH_LISTING_TRUNCATED = Counter(
    "relay_watch_listing_truncated",
    "Watch listings where the vendor reported more runs (total) than it would page out: the "
    "runs beyond what came back could not be read (a tenant notice is kept too).",
    ["provider"],
)
TRANSITIONS = Counter(
    "relay_transitions",
    "Status transitions a poll observed and recorded (the first status, from a start, is not).",
    ["provider"],
)
BUDGET_REQUESTS = Counter(
    "relay_vendor_budget_requests",
    "Vendor requests granted a slot of the shared per-credential budget, by budget (the provider "
    "for the operator's account, <provider>:own for tenants' own connections together).",
    ["budget"],
)
BUDGET_WAIT = Histogram(
    "relay_vendor_budget_wait_seconds",
    "Time a vendor request waited for its budget slot.",
    ["budget"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
)
BUDGET_DEFERRED = Counter(
    "relay_vendor_budget_deferred",
    "Vendor requests put off because the shared budget had no slot within a second.",
    ["budget"],
)
BUDGET_RATE = Gauge(
    "relay_vendor_budget_rate",
    "The configured request budget per credential, requests per second (RELAY_VENDOR_RATE).",
    ["budget"],
)
DELIVERY_SLOT_WAITS = Counter(
    "relay_delivery_slot_waits",
    "Lanes put to wait because their worker had every delivery slot it gives their subscription "
    "(RELAY_DELIVERY_PER_SUBSCRIPTION) in use; each is woken when a delivery to it ends.",
)
POISONED = Counter(
    "relay_jobs_set_aside",
    "Members set aside after failing RELAY_POISON_AFTER jobs in a row, by pump (the error is "
    "on the run; a refresh puts a run back).",
    ["pump"],
)
IN_FLIGHT = Gauge(
    "relay_worker_in_flight",
    "Jobs this worker is running now, by pump.",
    ["pump"],
)
TRACE_SPANS_DROPPED = Counter(
    "relay_trace_spans_dropped",
    "Trace spans this process dropped instead of exporting (tracing on, relay/tracing.py), by "
    "reason: queue_full (the export queue, OTEL_BSP_MAX_QUEUE_SIZE, was full: the collector is "
    "slow or down) or export_failed (the collector refused or could not be reached in "
    "OTEL_EXPORTER_OTLP_TIMEOUT). Served by the worker's port and the api's /metrics.",
    ["reason"],
)


def status_class(code: int | None) -> str:
    if code is None:
        return "error"
    return f"{code // 100}xx" if 100 <= code < 600 else "other"


_BODY_TIME = re.compile(r'"timestamp":"([0-9T:.-]+)Z"')


def event_time(body: str | None) -> float | None:
    """When the event was recorded, read from the head of its stored body (`{"type":…,
    "timestamp":…}`): no extra Redis read in the deliver job."""
    if not body:
        return None
    found = _BODY_TIME.search(body, 0, 160)
    if found is None:
        return None
    try:
        return datetime.fromisoformat(found.group(1)).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def observe_delivery(
    *,
    outcome: str,
    code: int | None,
    latency_s: float,
    attempt: int,
    created_at: float | None,
    now: float,
) -> None:
    """Everything the deliver job reports about one attempt; in-process only."""
    cls = status_class(code)
    child(DELIVERIES, outcome, cls).inc()
    DELIVERY_LATENCY.observe((cls,), latency_s)
    if outcome in ("succeeded", "dead"):
        DELIVERY_ATTEMPTS.observe((outcome,), attempt)
    if outcome == "dead":
        DEAD_LETTERED.inc()
    if outcome == "succeeded" and created_at is not None:
        DELIVERY_LAG.observe((), max(0.0, now - created_at))


_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, kept: every delivery and poll reports under the same few label
    sets, and prometheus_client's `labels()` validates and locks on each call (bounded: the label
    values are outcomes, status classes, providers and budget labels, a fixed handful)."""
    key = (metric, labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


def start_worker_server(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve the default registry on `port`. 0 turns it off; a port in use is logged, not fatal
    (several workers on one host, e.g. in tests)."""
    if port <= 0:
        log.info("worker_metrics_disabled")
        return None
    try:
        result = start_http_server(port, addr=addr)
    except OSError as exc:
        log.warning("worker_metrics_port_unavailable", port=port, error=str(exc))
        return None
    log.info("worker_metrics_listening", port=port)
    return result


def stop_worker_server(handle: Any) -> None:
    if isinstance(handle, tuple) and handle:
        server = handle[0]
        server.shutdown()
        server.server_close()
