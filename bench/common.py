"""Shared plumbing for the benchmarks in this folder: a real Valkey, the vendor simulator, a
receiver and the relay's own api/worker processes, all on 127.0.0.1, all bounded in time.

Each benchmark is a script (`.venv/bin/python bench/<name>.py --help`); this module is not run
on its own except as the receiver subprocess (`python bench/common.py --receiver PORT`).

Process CPU and RSS come from /proc (Linux), so no extra package is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TENANT = "bench"
API_KEY = "bench-key-0123456789abcdef"
CITEDY_KEY = "citedy_agent_bench_key_0001"
AUTOPOSTING_KEY = "sk-social-bench-key-0001"
LOGS = REPO / "bench-artifacts"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"process for port {port} exited with {proc.returncode}"
                ) from None
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields_[11]) + int(fields_[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [[str(c) for c in header], *[[fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def parse_counts(raw: str) -> list[int]:
    return [int(x) for x in raw.split(",") if x.strip()]


# ---------------------------------------------------------------- processes


def spawn(args: Sequence[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    out: Any = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Bench:
    """Everything one benchmark run started; `close()` stops it all (in reverse order)."""

    name: str
    redis_url: str = ""
    sim_url: str = ""
    api_url: str = ""
    receiver_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api: subprocess.Popen[bytes] | None = None
    valkey: Any = None
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="relay-bench-")))

    @property
    def logs(self) -> Path:
        path = LOGS / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_valkey(self) -> str:
        from relay.store.connection import start_embedded

        # The Valkey `relay dev` runs, as `relay dev` starts it (relay/store/connection.py).
        self.valkey = start_embedded(self.tmp / "valkey", persist=False)
        self.redis_url = self.valkey.connection_url + "/0"
        return self.redis_url

    def start_simulator(self, **config: Any) -> str:
        port = free_port()
        proc = spawn(
            ["-m", "relay.cli", "simulate", "--port", str(port)], {}, self.logs / "sim.log"
        )
        self.procs.append(proc)
        wait_port(port, proc)
        self.sim_url = f"http://127.0.0.1:{port}"
        import httpx

        with httpx.Client(base_url=self.sim_url, timeout=10) as c:
            if config:
                c.post("/_sim/config", json=config).raise_for_status()
            c.post("/_sim/credits", json={"api_key": CITEDY_KEY, "balance": 10**9})
        return self.sim_url

    def start_receiver(self) -> str:
        port = free_port()
        proc = spawn([str(Path(__file__)), "--receiver", str(port)], {}, self.logs / "recv.log")
        self.procs.append(proc)
        wait_port(port, proc)
        self.receiver_url = f"http://127.0.0.1:{port}"
        return self.receiver_url

    def relay_env(self, **extra: str) -> dict[str, str]:
        env = {
            "REDIS_URL": self.redis_url,
            "RELAY_API_KEYS": f"{TENANT}:{API_KEY}",
            "CITEDY_BASE_URL": self.sim_url or "http://127.0.0.1:9",
            "CITEDY_API_KEY": CITEDY_KEY,
            "AUTOPOSTING_BASE_URL": (self.sim_url or "http://127.0.0.1:9") + "/autoposting",
            "AUTOPOSTING_API_KEY": AUTOPOSTING_KEY,
            "RELAY_ALLOW_PRIVATE_URLS": "true",
            "RELAY_LOG_LEVEL": "warning",
            "RELAY_WORKER_METRICS_PORT": "0",
        }
        env.update(extra)
        self.env = env
        return env

    def start_api(self, extra_args: Sequence[str] = ()) -> str:
        port = free_port()
        self.api = spawn(
            ["-m", "relay.cli", "api", "--port", str(port), *extra_args],
            self.env,
            self.logs / "api.log",
        )
        wait_port(port, self.api)
        self.api_url = f"http://127.0.0.1:{port}"
        return self.api_url

    def start_workers(self, count: int, profile: bool = False) -> list[subprocess.Popen[bytes]]:
        for _ in range(count):
            index = len(self.workers)
            env = {**self.env, "RELAY_HEARTBEAT_FILE": str(self.tmp / f"worker{index}.hb")}
            args = ["-m", "relay.cli", "worker"]
            if profile:
                out = self.logs / f"worker{index}.prof"
                args = ["-m", "cProfile", "-o", str(out), *args]
            self.workers.append(spawn(args, env, self.logs / f"worker{index}.log"))
        return self.workers

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop(proc, timeout=30)
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers()
        for proc in [*([self.api] if self.api else []), *reversed(self.procs)]:
            stop(proc)
        self.procs.clear()
        self.api = None
        if self.valkey is not None:
            with contextlib.suppress(Exception):
                self.valkey.stop()
            self.valkey = None


@contextlib.contextmanager
def bench(name: str) -> Iterator[Bench]:
    b = Bench(name)
    try:
        yield b
    finally:
        b.close()


def redis_client(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, decode_responses=True, max_connections=64)


async def redis_cpu(r: Any) -> float:
    """CPU seconds Valkey has used so far (INFO cpu)."""
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def subscribe(api_url: str, url: str, count: int = 1) -> list[dict[str, Any]]:
    import httpx

    out = []
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as c:
        for i in range(count):
            resp = await c.post("/v1/subscriptions", json={"url": url, "description": f"b{i}"})
            resp.raise_for_status()
            out.append(resp.json())
    return out


# ---------------------------------------------------------------- the receiver


async def receiver_stats(url: str, since: int = 0) -> dict[str, Any]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{url}/_stats", params={"since": since}) as resp,
    ):
        data: dict[str, Any] = await resp.json()
        return data


async def receiver_reset(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.post(f"{url}/_reset") as resp:
        await resp.read()


def serve_receiver(port: int) -> None:
    """A bare aiohttp receiver answering 204 and noting (webhook-id, arrival time) per POST; the
    same server takes the relay's deliveries and the raw client loop, so both pay the same."""
    from aiohttp import web

    hits: list[tuple[str, float]] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        hits.append((request.headers.get("webhook-id", ""), time.time()))
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.json_response({"count": len(hits), "hits": hits[since:]})

    async def reset(request: web.Request) -> web.Response:
        hits.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def delivery_body(size: int = 1024) -> bytes:
    shell = {"type": "run.status_changed", "data": {"pad": ""}}
    return json.dumps({**shell, "data": {"pad": "x" * (size - len(json.dumps(shell)))}}).encode()


async def raw_post_rate(url: str, seconds: float, concurrency: int, body: bytes) -> float:
    """The receiver's raw capacity: a bare aiohttp client loop POSTing `body` as fast as it can
    with `concurrency` in flight. Returns 2xx per second."""
    rate, _ = await raw_post_stats(url, seconds, concurrency, body)
    return rate


async def raw_post_stats(
    url: str, seconds: float, concurrency: int, body: bytes
) -> tuple[float, float]:
    """`raw_post_rate` and the bare loop's own CPU per POST, in microseconds: the cost of the
    bare network exchange a delivery is measured against."""
    import aiohttp

    done = 0
    deadline = time.monotonic() + seconds
    headers = {
        "content-type": "application/json",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + "A" * 44,
    }
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop(i: int) -> None:
            nonlocal done
            n = 0
            while time.monotonic() < deadline:
                n += 1
                h = {**headers, "webhook-id": f"raw_{i}_{n}"}
                async with session.post(url, data=body, headers=h) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        done += 1

        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(loop(i) for i in range(concurrency)))
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    return done / elapsed, cpu / max(done, 1) * 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--receiver", type=int, required=True)
    serve_receiver(parser.parse_args().receiver)
