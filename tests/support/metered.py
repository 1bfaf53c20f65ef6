"""A relay stack of its own for one test module: its own Redis database (flushed first), one
worker serving Prometheus metrics on a free port, and a plain client on that database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

from tests.support.servers import free_port, wait_http
from tests.support.stack import Stack, base_env, running_stack


@contextlib.contextmanager
def metered_stack(
    redis_url: str, sim_url: str, logs: Path, **extra_env: str
) -> Iterator[tuple[Stack, int, redis.Redis]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    port = free_port()
    env = base_env(redis_url, sim_url, RELAY_WORKER_METRICS_PORT=str(port), **extra_env)
    try:
        with running_stack(env, logs, workers=1) as stack:
            wait_http(f"http://127.0.0.1:{port}/metrics")
            yield stack, port, client
    finally:
        client.close()


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of a worker metric's samples whose labels include `labels`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
