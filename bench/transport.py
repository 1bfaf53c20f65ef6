"""Outbound POST throughput: raw aiohttp vs plain httpx vs the relay's client, in one run.

Why this exists: the delivery worker's ceiling is set by its HTTP client, and plain
`httpx.AsyncClient` collapses under concurrency on small boxes (encode/httpx#3215). This keeps
the numbers behind `relay.delivery.http_client`'s design reproducible:

    .venv/bin/python bench/transport.py [--seconds 5] [--concurrency 32]

The receiver is a minimal aiohttp server answering 204, run in a subprocess so it does not
share the client's event loop (and so, on a 2-core box, roughly a core each). Everything talks
to 127.0.0.1 only, and every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

REPO = Path(__file__).resolve().parents[1]
_SHELL = {"type": "run.status_changed", "data": {"pad": ""}}
BODY = json.dumps({**_SHELL, "data": {"pad": "x" * (1024 - len(json.dumps(_SHELL)))}}).encode()
HEADERS = {"content-type": "application/json", "webhook-id": "evt_bench"}
WARMUP_SECONDS = 0.5


def serve(port: int) -> None:
    """The receiver: read the body, answer 204."""
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("receiver did not start")


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[int(q) - 1] * 1000


Post = Callable[[], Awaitable[None]]


async def measure(name: str, post: Post, seconds: float, concurrency: int) -> Result:
    result = Result(name)

    async def worker(until: float, record: bool) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            try:
                await post()
            except Exception:
                result.errors += 1
                continue
            if record:
                result.latencies.append(time.perf_counter() - started)

    async def phase(duration: float, record: bool) -> None:
        until = time.perf_counter() + duration
        tasks = [asyncio.create_task(worker(until, record)) for _ in range(concurrency)]
        # A stuck client must not stall the benchmark: give it a grace period, then cancel.
        _, pending = await asyncio.wait(tasks, timeout=duration + 10)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    await phase(WARMUP_SECONDS, record=False)
    started = time.perf_counter()
    await phase(seconds, record=True)
    result.elapsed = time.perf_counter() - started
    return result


async def run(url: str, seconds: float, concurrency: int) -> list[Result]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from relay.delivery.http_client import make_client, request_capped

    results: list[Result] = []

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def raw() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                response.raise_for_status()

        results.append(await measure("raw aiohttp ClientSession", raw, seconds, concurrency))

    async with httpx.AsyncClient(timeout=15) as plain:

        async def via_httpx() -> None:
            (await plain.post(url, content=BODY, headers=HEADERS)).raise_for_status()

        results.append(await measure("plain httpx.AsyncClient", via_httpx, seconds, concurrency))

    for guard in (False, True):
        async with make_client(timeout=15, allow_private=True, guard=guard) as client:

            async def via_relay(client: httpx.AsyncClient = client) -> None:
                (await client.post(url, content=BODY, headers=HEADERS)).raise_for_status()

            label = f"make_client guard={guard}"
            results.append(await measure(label, via_relay, seconds, concurrency))

    async with make_client(timeout=15, allow_private=True, guard=True) as client:

        async def capped() -> None:
            status, _, _ = await request_capped(client, "POST", url, BODY, HEADERS)
            if status >= 300:
                raise RuntimeError(status)

        label = "make_client guard=True + request_capped"
        results.append(await measure(label, capped, seconds, concurrency))

    return results


def print_table(results: list[Result], seconds: float, concurrency: int) -> None:
    base = results[0].rate or 1.0
    print(
        f"\n{len(BODY)} B JSON POST, concurrency {concurrency}, {seconds:g} s each,"
        f" {os.cpu_count()} CPUs"
    )
    header = (
        f"{'client':<38} {'POST/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs aiohttp':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.name:<38} {r.rate:>9.0f} {r.percentile(50):>8.2f} {r.percentile(99):>8.2f}"
            f" {r.errors:>7} {r.rate / base:>10.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    receiver = start_receiver(port)
    try:
        results = asyncio.run(run(f"http://127.0.0.1:{port}/hook", args.seconds, args.concurrency))
    finally:
        receiver.send_signal(signal.SIGINT)
        try:
            receiver.wait(timeout=5)
        except subprocess.TimeoutExpired:
            receiver.kill()
            receiver.wait()
    print_table(results, args.seconds, args.concurrency)


if __name__ == "__main__":
    main()
