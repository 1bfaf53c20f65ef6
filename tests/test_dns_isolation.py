"""One subscriber's slow DNS does not stall anyone else's deliveries (issue 24, Medium 4).

The delivery client as the workers build it (workers/context.py), its DNS hooked where the
threaded resolver calls it (`socket.getaddrinfo`): names `slow-*.test` take 10 s to resolve
(one tenant's subscribers, several of them, each with deliveries in flight), `fast.test` resolves
at once. Another tenant's deliveries to `fast.test` keep their latency. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.config import Settings
from tests.support.servers import serve_in_thread
from workers.context import build_context

SLOW_SECONDS = 10.0
_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(scope="module")
def sink() -> Iterator[int]:
    """A receiver that answers 204 to anything."""

    async def ok(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    with serve_in_thread(Starlette(routes=[Route("/", ok, methods=["POST"])])) as url:
        port = httpx.URL(url).port
        assert port is not None
        yield port


@pytest.fixture()
def hooked_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    release = threading.Event()

    def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(host, str) and host.startswith("slow-") and host.endswith(".test"):
            release.wait(SLOW_SECONDS)  # a resolver that takes 10 s, holding its thread
            host = "127.0.0.1"
        elif host == "fast.test":
            host = "127.0.0.1"
        return _real_getaddrinfo(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield release
    release.set()


def test_a_slow_name_does_not_stall_other_tenants_deliveries(
    hooked_dns: threading.Event, sink: int
) -> None:
    port = sink
    settings = Settings(  # type: ignore[call-arg]
        REDIS_URL="redis://127.0.0.1:1/0",
        RELAY_ALLOW_PRIVATE_URLS="true",
        RELAY_DELIVERY_TIMEOUT="15",
        RELAY_VENDOR_TIMEOUT="5",
        RELAY_LEASE_SECONDS="30",
    )

    async def go() -> list[float]:
        ctx = build_context(None, settings)  # type: ignore[arg-type]
        client = ctx.deliver_http
        try:
            # Tenant A: eight subscribers on slow names, three deliveries in flight to each.
            slow = [
                asyncio.create_task(client.post(f"http://slow-{i}.test:{port}/"))
                for i in range(8)
                for _ in range(3)
            ]
            await asyncio.sleep(0.3)
            # Tenant B's deliveries, one after another, while A's names are resolving.
            latencies = []
            for _ in range(5):
                started = time.monotonic()
                answer = await client.post(f"http://fast.test:{port}/", json={})
                assert answer.status_code == 204
                latencies.append(time.monotonic() - started)
            hooked_dns.set()
            await asyncio.gather(*slow, return_exceptions=True)
            return latencies
        finally:
            await ctx.aclose()

    latencies = asyncio.run(go())
    assert max(latencies) < 1.0, latencies
