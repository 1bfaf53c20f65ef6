"""One HTTP/1.1 exchange on a kept-alive connection: the hot paths' way out. Every delivery and
every poll goes through `http_client.request_capped`, which sends here.

Why not aiohttp's client for these: its per-request machinery (request and response objects, a
payload lookup, a timer context, a stream reader and the coroutine layers between them) cost
~60 µs of CPU per POST on the reference box, where writing the request and parsing the answer
cost ~17 µs (a bare loop of each, side by side; issue 27). Here a request is one write of bytes
built in one go, and the answer is parsed by `httptools` (llhttp, the parser of uvicorn and
Node.js) straight from the protocol's `data_received`, into at most `limit` bytes of body.
aiohttp stays for everything else (`make_client`'s httpx API).

What it keeps of the aiohttp path, so callers see the same:
- the SSRF guard: names resolve through the client's guarded resolver (the same object, the same
  DNS threads), a connection goes to exactly the addresses it answered, and answers are kept
  DNS_CACHE_SECONDS as aiohttp's connector kept them; IP literals are checked by the caller;
- the bounds: at most `max_connections` exchanges at once, `max_per_host` to one host (a waiting
  exchange waits within its budget); idle connections close after KEEPALIVE_SECONDS;
- the cap: at most `limit` bytes of an answer are read, and a connection whose answer was not
  read to its end is closed, never drained or reused;
- the errors, as httpx classes (`ConnectError`, `ReadError`, `RemoteProtocolError`, the
  resolver's `BlockedDestination`). The total budget is the caller's (relay/delivery/deadlines.py):
  it cancels the exchange, whose connection is then closed.

A request it would not send exactly as aiohttp did (credentials in the URL, another scheme or
method, a header with a line break) goes to aiohttp instead: `target` or `request_head` says None
(relay/delivery/http_request.py, which builds what is written here).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import cast

import httptools
import httpx
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict, CIMultiDictProxy

from relay.delivery.http_request import Key, Target

#: Resolved (and checked) addresses are reused for this long; short, so DNS changes are seen.
DNS_CACHE_SECONDS = 10
#: An idle connection is closed after this long, and never reused past it.
KEEPALIVE_SECONDS = 30.0
Answer = tuple[int, bytes, CIMultiDictProxy[str]]


class _Connection(asyncio.Protocol):
    """One kept-alive connection and the answer it is reading: the waiter `start` returns is
    done once the answer ended, or once `limit` bytes of its body are in (the connection is
    then closed by the pool, the rest never read)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._limit = 0
        self.status = 0
        self.body = bytearray()
        self.fields: list[tuple[str, str]] = []
        self.headed = False  # the answer's head is read
        self.complete = False  # the answer ended
        self.keep = False  # ... and the connection may carry another request
        self.broken = False  # the connection is not to be used again
        self.idle_since = 0.0

    def start(self, limit: int, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        self._limit = limit
        self.status = 0
        self.body = bytearray()
        self.fields = []
        self.headed = self.complete = self.keep = False
        self._waiter = loop.create_future()
        return self._waiter

    def rest(self, now: float) -> None:
        """The answer was taken: the connection idles from `now`."""
        self._waiter = None
        self.idle_since = now

    def usable(self, now: float) -> bool:
        transport = self.transport
        return (
            not self.broken
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since < KEEPALIVE_SECONDS
        )

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self.complete:
            # Bytes nobody asked for (on an idle connection, or past the answer's end): the
            # connection's framing can no longer be trusted.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(httpx.RemoteProtocolError("the answer is not valid HTTP/1.1"))

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        if self._waiter is None or self._waiter.done():
            return
        if self.headed and not self._framed():
            # An answer with neither a length nor chunks ends with its connection.
            self.complete = True
            self._waiter.set_result(None)
        else:
            self._waiter.set_exception(
                httpx.RemoteProtocolError("the server closed the connection")
            )

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        code = self._parser.get_status_code()
        if code < 200:
            return  # an interim answer (100 Continue): the real one follows
        self.status = code
        self.headed = True
        if self._limit <= 0:
            self._wake()

    def on_body(self, body: bytes) -> None:
        room = self._limit - len(self.body)
        if room > 0:
            self.body += body if len(body) <= room else body[:room]
        if len(self.body) >= self._limit:
            self._wake()

    def on_message_complete(self) -> None:
        if not self.headed:  # an interim answer ended
            self.fields = []
            return
        self.complete = True
        self.keep = self._parser.should_keep_alive()
        self._wake()

    def _framed(self) -> bool:
        if self.status in (204, 304):
            return True
        return any(n.lower() in ("content-length", "transfer-encoding") for n, _ in self.fields)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()


class Pool:
    """The kept-alive connections of one client, and its bounds. A sweep every
    KEEPALIVE_SECONDS, armed only while something is kept, closes what idled past its
    keep-alive and forgets expired addresses, so a host no longer sent to keeps nothing."""

    def __init__(
        self,
        *,
        resolver: Callable[[], AbstractResolver],
        ssl_context: ssl.SSLContext,
        max_connections: int,
        max_per_host: int,
    ) -> None:
        self._resolver = resolver
        self._ssl = ssl_context
        self._all = asyncio.Semaphore(max_connections)
        self._max_per_host = max_per_host
        #: Per host: its bound, and its exchanges in flight (the bound is dropped by the sweep
        #: once none is in flight and no connection is kept).
        self._hosts: dict[Key, asyncio.Semaphore] = {}
        self._busy: dict[Key, int] = {}
        #: Idle connections per host, the most recently used last (taken first).
        self._idle: dict[Key, list[_Connection]] = {}
        #: host -> (until, [(address, family), ...]) as the resolver answered (and checked).
        self._dns: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def exchange(self, where: Target, head: bytes, content: bytes, limit: int) -> Answer:
        loop = asyncio.get_running_loop()
        key = where.key
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = asyncio.Semaphore(self._max_per_host)
        # Counted from before the wait, so the sweep never drops a bound someone waits on.
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            async with host, self._all:
                conn = self._take(key, loop.time())
                if conn is None:
                    conn = await self._connect(where, loop)
                try:
                    done = conn.start(limit, loop)
                    assert conn.transport is not None
                    if content:
                        conn.transport.writelines((head, content))
                    else:
                        conn.transport.write(head)
                    await done
                except BaseException as exc:
                    conn.close()
                    if isinstance(exc, OSError):
                        raise httpx.ReadError(type(exc).__name__) from None
                    raise
                fields = CIMultiDictProxy(CIMultiDict(conn.fields))
                answer = (conn.status, bytes(conn.body), fields)
                if conn.complete and conn.keep and not conn.broken and not self._closed:
                    conn.rest(loop.time())
                    self._idle.setdefault(key, []).append(conn)
                    self._arm(loop)
                else:
                    conn.close()
                return answer
        finally:
            self._busy[key] -= 1

    def _take(self, key: Key, now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def _connect(self, where: Target, loop: asyncio.AbstractEventLoop) -> _Connection:
        if where.literal:
            family = int(socket.AF_INET6 if ":" in where.host else socket.AF_INET)
            addresses = [(where.host, family)]
        else:
            addresses = await self._addresses(where.host, where.port, loop)
        failed = "no address"
        for address, family in addresses:
            try:
                transport, conn = await loop.create_connection(
                    _Connection,
                    address,
                    where.port,
                    family=family,
                    ssl=self._ssl if where.tls else None,
                    server_hostname=where.host if where.tls else None,
                )
                conn.transport = transport  # (uvloop may call connection_made later)
                return conn
            except OSError as exc:  # refused, unreachable, TLS refused: the next address
                failed = type(exc).__name__
        raise httpx.ConnectError(f"cannot connect: {failed}")

    async def _addresses(
        self, host: str, port: int, loop: asyncio.AbstractEventLoop
    ) -> list[tuple[str, int]]:
        """The host's addresses as the (guarded) resolver answered, kept DNS_CACHE_SECONDS. A
        refusal (`BlockedDestination`) is raised as it is, and never kept."""
        now = loop.time()
        cached = self._dns.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            results = await self._resolver().resolve(host, port, socket.AF_UNSPEC)
        except OSError as exc:  # (BoundedResolver's timeout is one too)
            raise httpx.ConnectError(f"cannot resolve: {type(exc).__name__}") from None
        found = [(str(r["host"]), int(r["family"])) for r in results]
        self._dns[host] = (now + DNS_CACHE_SECONDS, found)
        self._arm(loop)
        return found

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None and not self._closed:
            self._sweeper = loop.call_later(KEEPALIVE_SECONDS, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """A walk of what is kept: the idle connections (at most the bounds' worth) and the
        hosts resolved since the last sweep, once per KEEPALIVE_SECONDS."""
        self._sweeper = None
        now = loop.time()
        for key, conns in list(self._idle.items()):
            kept = []
            for conn in conns:
                if conn.usable(now):
                    kept.append(conn)
                else:
                    conn.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        for key in [k for k, n in self._busy.items() if n <= 0 and k not in self._idle]:
            # Nothing in flight to it or waiting, nothing kept: its bound goes.
            del self._busy[key]
            self._hosts.pop(key, None)
        for name in [n for n, (until, _) in self._dns.items() if until <= now]:
            del self._dns[name]
        if self._idle or self._dns or self._hosts:
            self._arm(loop)

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._dns.clear()
