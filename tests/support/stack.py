"""The relay under test, for real: the ingress and arq workers as child processes (so a test can
SIGKILL them) against a real Valkey, the vendor simulators and the recording receiver."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.support.servers import free_port, spawn, stop, wait_http

T = TypeVar("T")

TENANT_KEYS = {
    "t1": "key-tenant-one-0123456789",
    "t2": "key-tenant-two-0123456789",
    "t3": "key-tenant-three-0123456789",
}
CITEDY_KEY = "citedy_agent_test_key_0001"
AUTOPOSTING_KEY = "sk-social-test-key-0001"


def base_env(redis_url: str, sim_url: str, **extra: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "RELAY_API_KEYS": ",".join(f"{t}:{k}" for t, k in TENANT_KEYS.items()),
        "CITEDY_BASE_URL": sim_url,
        "CITEDY_API_KEY": CITEDY_KEY,
        "AUTOPOSTING_BASE_URL": sim_url + "/autoposting",
        "AUTOPOSTING_API_KEY": AUTOPOSTING_KEY,
        "RELAY_ALLOW_PRIVATE_URLS": "true",
        "RELAY_RETRY_SCHEDULE": "0.2,0.4,0.8",
        "RELAY_POLL_MIN_INTERVAL": "0.2",
        # Near-fixed polling, well inside the simulators' 0.5 s steps, so tests that expect every
        # status see every status (a poll can only see what lasts longer than its interval).
        "RELAY_POLL_MAX_INTERVAL": "0.25",
        "RELAY_WORKER_METRICS_PORT": "0",
        "RELAY_DELIVERY_TIMEOUT": "2",
        "RELAY_VENDOR_TIMEOUT": "2",
        "RELAY_LEASE_SECONDS": "4",
        "RELAY_VENDOR_RATE": "200",
        "RELAY_WATCH_INTERVAL": "0.3",
        # Short, so tests that revoke a vendor key see the run give up soon (the default is 1 h).
        "RELAY_UNAUTHORIZED_WINDOW": "1.5",
        "RELAY_LOG_LEVEL": "info",
    }
    env.update(extra)
    return env


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    api_url: str = ""
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.api = spawn(
            ["-m", "relay.cli", "api", "--port", str(port)], self.env, self.logs / "api.log"
        )
        wait_http(self.api_url + "/healthz")

    def start_worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        env = {
            **self.env,
            "RELAY_HEARTBEAT_FILE": str(self.logs / f"worker{index}.hb"),
            **extra_env,
        }
        proc = spawn(["-m", "relay.cli", "worker"], env, self.logs / f"worker{index}.log")
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.workers.remove(proc)

    def client(self, tenant: str = "t1") -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            timeout=10.0,
            headers={"authorization": f"Bearer {TENANT_KEYS[tenant]}"},
        )

    def close(self) -> None:
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            stop(proc)
        self.workers.clear()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


@contextlib.contextmanager
def running_stack(env: dict[str, str], logs: Path, workers: int = 1) -> Iterator[Stack]:
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=env, logs=logs)
    try:
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
        yield stack
    finally:
        stack.close()


def unique(prefix: str = "x") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def subscribe(client: httpx.Client, url: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/subscriptions", json={"url": url, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
