"""A local OTLP/HTTP trace sink for the benches' "tracing on" runs: answers every
`POST /v1/traces` 200 at once and counts requests, bytes and spans (decoded with
opentelemetry-proto), printed every few seconds to its log. Like any collector, it runs on the
same cores as the relay, so its cost shows in the figures.

    .venv/bin/python bench/otlp_sink.py --port 4318
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 .venv/bin/python bench/delivery.py
"""

from __future__ import annotations

import argparse
import time

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

COUNTS = {"requests": 0, "spans": 0, "bytes": 0}
ANSWER = ExportTraceServiceResponse().SerializeToString()


async def export(request: web.Request) -> web.Response:
    raw = await request.read()
    message = ExportTraceServiceRequest()
    message.ParseFromString(raw)
    COUNTS["requests"] += 1
    COUNTS["bytes"] += len(raw)
    COUNTS["spans"] += sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
    return web.Response(body=ANSWER, content_type="application/x-protobuf")


async def report(app: web.Application) -> None:
    import asyncio

    async def loop() -> None:
        while True:
            await asyncio.sleep(5)
            print(time.strftime("%H:%M:%S"), COUNTS, flush=True)

    app["reporter"] = asyncio.create_task(loop())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", export)
    app.on_startup.append(report)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
