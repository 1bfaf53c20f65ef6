"""DNS for outbound requests with its own bounded threads and timeout, so one subscriber whose
name is slow to resolve cannot stall anyone else's deliveries (issue 24).

aiohttp's default resolver runs `getaddrinfo` on the event loop's default executor (a handful of
threads on a small box, shared with everything else the process sends there), and a request
timeout cancels the await, not the thread: a few slow names held every thread and every other
tenant's delivery waited behind them. Here:

- lookups run on a dedicated pool of `threads` threads, nothing else's;
- one lookup per (host, port, family) at a time: concurrent requests for a name share it, so a
  slow name holds at most one thread however many deliveries wait on it;
- each waiter gives up after `timeout` seconds (an OSError, which the client reports as a
  connection error: the delivery is retried on its schedule), and a name that timed out fails
  fast for `timeout` seconds more instead of taking another thread while its lookup still runs.

So a slow name costs one thread at most and distinct slow names never exceed the pool; other
names resolve on the threads that are left. `getaddrinfo` is looked up on `socket` at each call,
so tests can hook it."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp.abc import AbstractResolver, ResolveResult

#: At most this many names remembered as slow; older entries are dropped first.
SLOW_NAMES_KEPT = 1024


def _lookup(host: str, port: int, family: int) -> list[ResolveResult]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
    out: list[ResolveResult] = []
    for fam, _, proto, _, address in infos:
        if fam == socket.AF_INET6 and len(address) >= 4 and address[3]:
            # A link-local address with its scope: keep the scope in the host, as aiohttp does.
            resolved = f"{address[0]}%{address[3]}"
        else:
            resolved = str(address[0])
        out.append(
            {
                "hostname": host,
                "host": resolved,
                "port": int(address[1]),
                "family": fam,
                "proto": proto,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
        )
    if not out:
        raise OSError(f"{host} does not resolve")
    return out


class BoundedResolver(AbstractResolver):
    def __init__(self, threads: int = 16, timeout: float = 5.0) -> None:
        self._threads = threads
        self._timeout = timeout
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[tuple[str, int, int], asyncio.Future[list[ResolveResult]]] = {}
        self._slow: dict[str, float] = {}

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="relay-dns")
        return self._pool

    def _note_slow(self, host: str) -> None:
        if len(self._slow) >= SLOW_NAMES_KEPT:
            self._slow.pop(next(iter(self._slow)))
        self._slow[host] = time.monotonic() + self._timeout

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        until = self._slow.get(host)
        if until is not None:
            if until > time.monotonic():
                raise OSError(f"resolving {host} timed out a moment ago")
            del self._slow[host]
        key = (host, port, int(family))
        lookup = self._inflight.get(key)
        if lookup is None:
            loop = asyncio.get_running_loop()
            lookup = loop.run_in_executor(self._executor(), _lookup, host, port, int(family))
            self._inflight[key] = lookup

            def done(f: asyncio.Future[list[ResolveResult]], k: tuple[str, int, int] = key) -> None:
                if self._inflight.get(k) is f:
                    del self._inflight[k]
                if not f.cancelled():
                    f.exception()  # retrieved: no "never retrieved" warning when all gave up

            lookup.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(lookup), self._timeout)
        except TimeoutError:
            self._note_slow(host)
            raise OSError(f"resolving {host} took longer than {self._timeout:g}s") from None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
