"""OpenTelemetry traces, configured only by the standard `OTEL_*` variables.

Off unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and
`OTEL_SDK_DISABLED` is not `true`, nor `OTEL_TRACES_EXPORTER` `none`). Off, every hot path tests
the one module-level boolean `ENABLED` before doing anything: no span object, no context work.

On, a run's trace is its ingress request's: `POST /v1/runs` (a server span, the caller's
`traceparent` its parent) stores that span's context with the run (`traceparent`/`tracestate`
fields of the run hash), and the start, every poll and every delivery attempt of the run, in any
worker and at any time, are children of it, so the whole run is one trace. A delivery attempt's
span is the parent named in the `traceparent` its webhook carries. A run a watch starts gets a
trace of its own (a root span linked to the watch's listing).

Exporting is a BatchSpanProcessor (OTLP/HTTP protobuf) on its own thread with a bounded queue
(`OTEL_BSP_MAX_QUEUE_SIZE`): a slow or absent collector drops spans (counted in
`relay_trace_spans_dropped_total`) and never holds up a job.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from relay.metrics import TRACE_SPANS_DROPPED

#: The one switch every hot path reads: False, and tracing costs a global lookup and a branch.
ENABLED = False

Value = AttributeValue
Attributes = Mapping[str, AttributeValue]
CLIENT = SpanKind.CLIENT
#: The run hash fields holding its trace context (W3C Trace Context, as the headers are spelled).
FIELDS = ("traceparent", "tracestate")

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the `OTEL_*` variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def resource(role: str) -> Resource:
    """`OTEL_SERVICE_NAME`/`OTEL_RESOURCE_ATTRIBUTES` as the SDK reads them; `run-relay` when
    neither names the service, and `relay.process` (api, worker) to tell the processes apart."""
    found = Resource.create({"relay.process": role})
    if str(found.attributes.get("service.name", "")).startswith("unknown_service"):
        found = found.merge(Resource({"service.name": "run-relay"}))
    return found


def setup(role: str) -> bool:
    """Turn tracing on for this process if the environment asks for it (idempotent)."""
    if ENABLED or not wanted():
        return ENABLED
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    processor = CountingBatchProcessor(OTLPSpanExporter())
    install(processor, role=role)
    atexit.register(shutdown)
    return True


def install(processor: SpanProcessor, *, role: str = "relay") -> TracerProvider:
    """Turn tracing on with this processor (setup's OTLP batch, or a test's in-memory one). The
    sampler is the SDK's from `OTEL_TRACES_SAMPLER` (default: parent-based, always on)."""
    global ENABLED, _tracer, _provider
    provider = TracerProvider(resource=resource(role), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    _provider = provider
    _tracer = provider.get_tracer("relay")
    ENABLED = True
    return provider


def uninstall() -> None:
    """Turn tracing off again (tests); spans already ended stay with their processor."""
    global ENABLED, _tracer, _provider
    ENABLED = False
    _tracer = None
    _provider = None


def shutdown(timeout: float = 5.0) -> None:
    """Flush what is queued, for at most `timeout` seconds (a collector that is down must not
    hold a stopping process: what is left is dropped)."""
    provider = _provider
    uninstall()
    if provider is None:
        return
    done = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    done.start()
    done.join(timeout)


class _CountingExporter(SpanExporter):
    """The real exporter, with what it could not export counted as dropped."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            TRACE_SPANS_DROPPED.labels("export_failed").inc(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingBatchProcessor(BatchSpanProcessor):
    """The SDK's BatchSpanProcessor (its queue, batch size and delay from `OTEL_BSP_*`), counting
    the spans it drops when its queue is full (the SDK only logs them and counts them in its own
    OpenTelemetry metrics, which the relay does not export)."""

    def __init__(self, exporter: SpanExporter, **options: Any) -> None:
        super().__init__(_CountingExporter(exporter), **options)
        # The SDK's queue: a deque bounded at OTEL_BSP_MAX_QUEUE_SIZE, so appending to a full
        # one drops its oldest span. Private to the SDK: tests/test_traces.py fails if it moves.
        self._queue: Any = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        self.max_queue: int | None = getattr(self._queue, "maxlen", None)

    def on_end(self, span: ReadableSpan) -> None:
        if (
            self.max_queue is not None
            and span.context is not None
            and span.context.trace_flags.sampled
            and len(self._queue) >= self.max_queue
        ):
            TRACE_SPANS_DROPPED.labels("queue_full").inc()
        super().on_end(span)


def _t() -> Tracer:
    assert _tracer is not None, "tracing is off: test tracing.ENABLED first"
    return _tracer


# --------------------------------------------------------------------------------------------
# A run's trace context
# --------------------------------------------------------------------------------------------


def fields_of(span: Span) -> dict[str, str]:
    """A span's context as run hash fields (and as outgoing headers: the same names)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def run_fields() -> dict[str, str]:
    """The trace context to store with a run being created: the current span's (the ingress
    request's), or a new trace's when there is none."""
    span = trace.get_current_span()
    if span.get_span_context().is_valid:
        return fields_of(span)
    return new_trace_fields("relay.run", {})


def new_trace_fields(name: str, attributes: Attributes) -> dict[str, str]:
    """A new trace for a run (one a watch found): a root span, ended at once, linked to the
    span this happens in (the watch's listing), its context to store with the run."""
    current = trace.get_current_span().get_span_context()
    links = [Link(current)] if current.is_valid else None
    span = _t().start_span(name, context=Context(), attributes=attributes, links=links)
    span.end()
    return fields_of(span)


def parent_of(traceparent: str | None, tracestate: str | None = None) -> Context:
    """The context a stored or received `traceparent` names (empty, so a new trace, when it is
    missing or malformed)."""
    if not traceparent:
        return Context()
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _propagator.extract(carrier)


@contextlib.contextmanager
def job_span(
    name: str,
    run: Mapping[str, str],
    attributes: Attributes,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """The span of one job of a run, a child of the run's stored context, current while the job
    runs (so its vendor calls nest under it and its log lines carry its ids)."""
    parent = parent_of(run.get("traceparent"), run.get("tracestate"))
    with _t().start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def client_span(method: str, url: str, attributes: Attributes | None = None) -> Iterator[Span]:
    """An outbound HTTP request (a vendor call), named and described as the HTTP semantic
    conventions say: `http.request.method`, `url.full`, `server.address`, `server.port`."""
    attrs: dict[str, AttributeValue] = {"http.request.method": method, **url_attributes(url)}
    attrs["url.full"] = url.split("?", 1)[0]
    if attributes:
        attrs.update(attributes)
    with _t().start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attrs) as span:
        yield span


def url_attributes(url: str) -> dict[str, AttributeValue]:
    """`url.scheme`, `server.address`, `server.port` of a URL (no path, no query, no userinfo:
    a subscriber's URL may carry a token)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    name, port = host, 443 if scheme == "https" else 80
    if host.startswith("["):
        name, _, tail = host[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif ":" in host:
        name, _, raw = host.rpartition(":")
        if raw.isdigit():
            port = int(raw)
    return {"url.scheme": scheme, "server.address": name, "server.port": port}


def responded(span: Span, code: int) -> None:
    span.set_attribute("http.response.status_code", code)
    if code >= 400:
        span.set_attribute("error.type", str(code))
        span.set_status(Status(StatusCode.ERROR))


def note(attributes: Attributes) -> None:
    """Attributes on the current span (callers test ENABLED first)."""
    trace.get_current_span().set_attributes(attributes)


def failed(error_type: str, description: str | None = None) -> None:
    """The current span's operation failed (`error.type`, status ERROR)."""
    span = trace.get_current_span()
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))


def outgoing() -> dict[str, str]:
    """`traceparent` (and `tracestate`) headers naming the current span as the parent."""
    return fields_of(trace.get_current_span())


def now_ns() -> int:
    return time.time_ns()


def finished_span(name: str, start_ns: int, attributes: Attributes) -> None:
    """A span for work already done (it started at `start_ns`, it ends now), a child of the
    current span: recording a transition, which is one Redis script with nothing under it."""
    span = _t().start_span(name, start_time=start_ns, attributes=attributes)
    span.end()


# --------------------------------------------------------------------------------------------
# Logs and the ingress
# --------------------------------------------------------------------------------------------


def log_ids(_: Any, __: str, event_dict: Any) -> Any:
    """structlog processor: `trace_id` and `span_id` of the current span on every log line."""
    if ENABLED:
        found = trace.get_current_span().get_span_context()
        if found.is_valid:
            event_dict.setdefault("trace_id", format(found.trace_id, "032x"))
            event_dict.setdefault("span_id", format(found.span_id, "016x"))
    return event_dict


#: Probes and scrapes: not traced (they would bury the requests that matter).
UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})


class ServerSpans:
    """ASGI middleware (installed only when tracing is on): one server span per HTTP request,
    named `{method} {http.route}`, its parent the caller's `traceparent` when there is exactly
    one well-formed one (anything else is ignored: a new trace, never an error)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not ENABLED or scope.get("path") in UNTRACED:
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        parents = 0
        agent = None
        for name, value in scope.get("headers") or ():
            if name == b"traceparent":
                parents += 1
                carrier["traceparent"] = value.decode("latin-1")
            elif name == b"tracestate":
                carrier["tracestate"] = value.decode("latin-1")
            elif name == b"user-agent":
                agent = value.decode("latin-1")
        parent = _propagator.extract(carrier) if parents == 1 else Context()
        method = scope.get("method", "GET")
        attrs: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.path": scope.get("path", ""),
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if scope.get("server"):
            attrs["server.address"], attrs["server.port"] = scope["server"][0], scope["server"][1]
        if scope.get("client"):
            attrs["client.address"] = scope["client"][0]
        if agent:
            attrs["user_agent.original"] = agent
        span = _t().start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attrs)
        token = otel_context.attach(trace.set_span_in_context(span, parent))

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                code = int(message["status"])
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_attribute("error.type", str(code))
                    span.set_status(Status(StatusCode.ERROR))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            span.end()
            otel_context.detach(token)
