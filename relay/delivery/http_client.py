"""The outbound HTTP client for deliveries and vendor calls: the httpx API on aiohttp's engine.

Why not plain `httpx.AsyncClient`: on the 2-core reference box its connection pool degrades
under concurrency (encode/httpx#3215): a few hundred POST/s at 32 in flight, against several
thousand through this client (run `bench/transport.py` for today's numbers).
`httpx_aiohttp.AiohttpTransport` keeps the httpx API the rest of the code and its tests are
written against, while aiohttp moves the bytes.

The send-time SSRF check lives in the connector's resolver: aiohttp connects to exactly the
addresses the resolver returns, so checking them there leaves no gap between "checked" and
"connected" for DNS rebinding to slip through. aiohttp skips the resolver for IP-literal hosts,
so those (and names like `localhost`) are refused by a wrapper transport before sending.

The wrapper also re-maps aiohttp's errors onto httpx's (relay/delivery/http_errors.py).

`request_capped`, the one call every delivery and poll makes, sends on the client's kept-alive
connections instead (relay/delivery/http11.py: a third of aiohttp's CPU per request), through
the same resolver and guard, within the same bounds and budget; what those would not send
exactly as aiohttp does goes to aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import weakref
from collections.abc import AsyncGenerator, Iterator, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import cast

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport
from multidict import CIMultiDictProxy

from relay.delivery import guarded_url, http11, http_request
from relay.delivery.deadlines import Deadlines
from relay.delivery.dns import BoundedResolver
from relay.delivery.http_errors import BlockedDestination, RemappedStream, remap
from relay.delivery.ssrf import is_forbidden_hostname, is_forbidden_ip, parse_ip

#: A slow subscriber must not hold every pooled connection and stall everyone else's deliveries.
DEFAULT_MAX_PER_HOST = 64
#: The most of an answer read in one go (`_exchange`, on aiohttp).
READ_CHUNK = 16 * 1024


class GuardedResolver(AbstractResolver):
    """Resolves through aiohttp's threaded resolver, then refuses forbidden answers.

    The checks run even when private addresses are allowed (only the verdict is ignored), so
    dev, tests and the benchmark exercise the same code path production runs. A mixed answer
    (one public, one private address) is refused as a whole rather than filtered: it is the
    shape of a rebinding attempt, and registration refuses it too.
    """

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if is_forbidden_hostname(host) and not self._allow_private:
            raise BlockedDestination("destination names the local machine or a metadata service")
        results = await self._inner.resolve(host, port, family)
        for result in results:
            ip = parse_ip(str(result["host"]).split("%", 1)[0])
            if (ip is None or is_forbidden_ip(ip)) and not self._allow_private:
                raise BlockedDestination(
                    "destination resolves to a private, loopback or reserved address"
                )
        return results

    async def close(self) -> None:
        await self._inner.close()


@functools.lru_cache(maxsize=4096)
def _literal_refusal(host: str) -> str | None:
    """Why `host` is refused before any lookup, or None. Cached: it runs on every request and
    a worker sends to a small set of hosts over and over."""
    ip = parse_ip(host.split("%", 1)[0])
    if ip is not None:
        return (
            "destination is a private, loopback or reserved address"
            if is_forbidden_ip(ip)
            else None
        )
    if is_forbidden_hostname(host):
        return "destination names the local machine or a metadata service"
    return None


@functools.lru_cache(maxsize=64)
def _client_timeout(
    total: float | None, connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for httpx's and the exchange's budget (immutable, so one object per
    client's settings and budget). The total is not aiohttp's to keep: `Deadlines` keeps it
    (relay/delivery/deadlines.py), with one timer for all requests. A socket timeout no shorter
    than the total budget could never fire first, so it is left out: aiohttp re-arms the read
    timer on every read of the answer, a timer handle made and cancelled per chunk for
    nothing."""

    def within(limit: float | None) -> float | None:
        return None if limit is not None and total is not None and limit >= total else limit

    return aiohttp.ClientTimeout(
        total=None, sock_connect=within(connect), sock_read=within(read), connect=within(pool)
    )


class GuardedTransport(httpx.AsyncBaseTransport):
    """Refuses IP-literal and local-name destinations the resolver never sees, and gives
    aiohttp's errors their proper httpx classes. `pool`: the kept-alive connections
    `request_capped` sends on (relay/delivery/http11.py), None to send everything through
    `inner`."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        guard: bool,
        allow_private: bool,
        pool: http11.Pool | None = None,
    ) -> None:
        self._inner = inner
        self._guard = guard
        self._allow_private = allow_private
        self.pool = pool
        #: The total budgets of `request_capped`'s exchanges on this client.
        self.deadlines = Deadlines()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._guard:
            reason = _literal_refusal(request.url.host)
            if reason is not None and not self._allow_private:
                raise BlockedDestination(reason, request=request)
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            mapped = remap(exc, request)
            if mapped is None:
                raise
            raise mapped from exc
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = RemappedStream(response.stream, request)
        return response

    async def aclose(self) -> None:
        self.deadlines.close()
        if self.pool is not None:
            self.pool.close()
        await self._inner.aclose()


def _no_cookies() -> CookieJar:
    """A jar that refuses every cookie, so one subscriber's Set-Cookie never rides along on
    a request to another."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def make_client(
    *,
    timeout: float,
    allow_private: bool,
    max_connections: int = 256,
    guard: bool = True,
    max_per_host: int = DEFAULT_MAX_PER_HOST,
    resolver: AbstractResolver | None = None,
    dns_threads: int = 16,
    dns_timeout: float = 5.0,
) -> httpx.AsyncClient:
    """An httpx client on aiohttp. `guard=True` enforces the SSRF policy at send time (unless
    `allow_private`); vendor clients pass `guard=False` because their URLs are operator
    configuration and may point at local simulators. DNS runs on its own `dns_threads` with a
    `dns_timeout` (relay/delivery/dns.py), so a slow name stalls nobody else; `resolver`
    replaces it underneath the guard (tests, aiodns). Never follows redirects: a 3xx from a
    subscriber is its answer, not an instruction to POST somewhere else."""
    ssl_context = httpx.create_ssl_context()

    def make_resolver() -> AbstractResolver:
        inner = resolver if resolver is not None else BoundedResolver(dns_threads, dns_timeout)
        return GuardedResolver(allow_private, inner) if guard else inner

    # Made inside the running loop on first need, then shared by both ways out (the lean pool
    # and aiohttp's connector: one guard, one set of DNS threads).
    resolve = functools.cache(make_resolver)

    def session() -> aiohttp.ClientSession:
        # Built lazily by the transport, inside the running loop, on the first request.
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=min(max_per_host, max_connections),
            keepalive_timeout=http11.KEEPALIVE_SECONDS,
            ttl_dns_cache=http11.DNS_CACHE_SECONDS,
            resolver=resolve(),
            ssl=ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        )

    transport = AiohttpTransport(client=session)
    pool = http11.Pool(
        resolver=resolve,
        ssl_context=ssl_context,
        max_connections=max_connections,
        max_per_host=min(max_per_host, max_connections),
    )
    guarded = GuardedTransport(transport, guard=guard, allow_private=allow_private, pool=pool)
    return httpx.AsyncClient(
        transport=guarded,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,  # env proxies would mount plain httpx transports around the guard
        cookies=_no_cookies(),
    )


def _asks_encoding(headers: Mapping[str, str]) -> bool:
    """Whether the caller chose its own accept-encoding (which then wins over `identity`).
    A plain loop that lower-cases only names of its length: it runs on every delivery and poll,
    and the generator over every name cost about 1 % of a delivery's CPU (py-spy)."""
    for name in headers:
        if len(name) == 15 and name.lower() == "accept-encoding":
            return True
    return False


def _identity(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers`, asking for the answer uncompressed unless they say otherwise."""
    send = dict(headers)
    if not _asks_encoding(send):
        send["accept-encoding"] = "identity"
    return send


_CLIENT_HEADERS: weakref.WeakKeyDictionary[httpx.AsyncClient, tuple[httpx.Headers, dict[str, str]]]
_CLIENT_HEADERS = weakref.WeakKeyDictionary()


def _client_headers(client: httpx.AsyncClient) -> dict[str, str]:
    """The client's own headers as aiohttp takes them, with `accept-encoding: identity`: built
    once per client (and again only if its headers object is replaced), not per request; that
    was ~2 µs of every delivery and poll (httpx re-decodes its headers on each read)."""
    kept = _CLIENT_HEADERS.get(client)
    if kept is None or kept[0] is not client.headers:
        merged = {**dict(client.headers.multi_items()), "accept-encoding": "identity"}
        kept = _CLIENT_HEADERS[client] = (client.headers, merged)
    return kept[1]


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers as a plain mapping: names lower-cased, a repeated header's values
    joined with ", " (as httpx gives them). Read only where asked (a retry-after, mostly), not
    copied into a dict on every answer, which cost more than the reads of it do."""

    __slots__ = ("_raw",)

    def __init__(self, raw: CIMultiDictProxy[str]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        values = self._raw.getall(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.lower() for name in self._raw))

    def __len__(self) -> int:
        return len({name.lower() for name in self._raw})

    def __repr__(self) -> str:
        return f"AnswerHeaders({dict(self)!r})"


async def request_capped(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    limit: int = 4096,
    *,
    total_timeout: float | None = None,
) -> tuple[int, bytes, Mapping[str, str]]:
    """One request that keeps at most `limit` bytes of the answer.

    A receiver's body is never trusted to be small: reading stops at `limit`, and closing an
    unfinished response drops the connection instead of draining it. The body is requested
    uncompressed and read raw, so a compressed answer cannot expand past the cap. The whole
    exchange is bounded by `total_timeout` (default: the client's read timeout), because
    per-read timeouts alone let a receiver that trickles a byte at a time hold a worker
    indefinitely. Raises httpx errors (`BlockedDestination`, timeouts, connection errors).
    """
    transport = getattr(client, "_transport", None)
    if isinstance(transport, GuardedTransport) and isinstance(transport._inner, AiohttpTransport):
        return await _exchange(
            client, transport, method, url, content, headers, limit, total_timeout
        )
    send_headers = _identity(headers)
    request = client.build_request(method, url, content=content or None, headers=send_headers)
    budget = total_timeout if total_timeout is not None else client.timeout.read
    try:
        async with asyncio.timeout(budget):
            response = await client.send(request, stream=True)
            try:
                excerpt = bytearray()
                async with contextlib.aclosing(
                    cast(AsyncGenerator[bytes, None], response.aiter_raw())
                ) as chunks:
                    async for chunk in chunks:
                        excerpt += chunk[: limit - len(excerpt)]
                        if len(excerpt) >= limit:
                            break
            finally:
                await response.aclose()
    except TimeoutError:
        raise httpx.ReadTimeout("request exceeded its total time budget", request=request) from None
    return response.status_code, bytes(excerpt), dict(response.headers)


async def _exchange(
    client: httpx.AsyncClient,
    transport: GuardedTransport,
    method: str,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    limit: int,
    total_timeout: float | None,
) -> tuple[int, bytes, Mapping[str, str]]:
    """`request_capped` on the client's kept-alive connections (relay/delivery/http11.py), or
    straight on its aiohttp session where those cannot send it: the same guard, timeouts, caps,
    error classes and headers either way, and no httpx Request/Response objects per request
    (that wrapping cost about as much CPU as aiohttp's own work; see bench/delivery.py and
    bench/polling.py)."""
    inner = cast(AiohttpTransport, transport._inner)
    target = url
    guarded: guarded_url.Guarded | None = None
    if transport._guard:
        # Subscriber URLs: sent as httpx's normalised form of the URL whose host was checked.
        # Vendor URLs (no guard) are operator configuration, each poll's different, and go as
        # they are.
        guarded = guarded_url.read(url)
        target = guarded.url
        if not transport._allow_private:
            reason = _literal_refusal(guarded.host)
            if reason is not None:
                raise BlockedDestination(reason, request=httpx.Request(method, target))
    base = _client_headers(client)
    if _asks_encoding(headers):
        base = {k: v for k, v in base.items() if k != "accept-encoding"}
    send_headers = {**base, **headers}
    timeout = client.timeout
    budget = total_timeout if total_timeout is not None else timeout.read
    phases = _client_timeout(budget, timeout.connect, timeout.read, timeout.pool)
    # The lean way (relay/delivery/http11.py) where it sends exactly what aiohttp would, and
    # no timeout but the total budget applies (one shorter than it is aiohttp's to keep).
    lean: tuple[http11.Pool, http_request.Target, bytes] | None = None
    only_budget = phases.sock_connect is None and phases.sock_read is None
    if transport.pool is not None and only_budget and phases.connect is None:
        where = guarded.where if guarded is not None else http_request.target(url)
        head = (
            None
            if where is None
            else http_request.request_head(method, where, send_headers, len(content))
        )
        if where is not None and head is not None:
            if where.literal and transport._guard and not transport._allow_private:
                # (checked again on the parse it connects by)
                reason = _literal_refusal(where.host)
                if reason is not None:
                    raise BlockedDestination(reason, request=httpx.Request(method, target))
            lean = (transport.pool, where, head)
    deadlines = transport.deadlines
    task = deadlines.enter(budget) if budget is not None else None
    try:
        if lean is not None:
            pool, where, head = lean
            code, body, fields = await pool.exchange(where, head, content, limit)
            return code, body, AnswerHeaders(fields)
        if not isinstance(inner.client, aiohttp.ClientSession):
            inner.client = inner.get_client()
        async with inner.client.request(
            method,
            str(target),
            data=content or None,
            headers=send_headers,
            allow_redirects=False,
            auto_decompress=False,
            compress=False,
            timeout=phases,
        ) as response:
            # Read straight from the stream, never past `limit` (a 204's is at its end at
            # once; an answer that came whole is one read): no chunk iterator and its two
            # coroutine layers per chunk, on every poll and delivery.
            stream = response.content
            excerpt = bytearray()
            while len(excerpt) < limit and not stream.at_eof():
                chunk = await stream.read(min(READ_CHUNK, limit - len(excerpt)))
                if not chunk:
                    break
                excerpt += chunk
            if not stream.at_eof():
                response.close()  # an unread rest is dropped with its connection
            return response.status, bytes(excerpt), AnswerHeaders(response.headers)
    except asyncio.CancelledError:
        if task is not None and deadlines.expired(task):
            request = httpx.Request(method, target)
            raise httpx.ReadTimeout(
                "request exceeded its total time budget", request=request
            ) from None
        raise
    except Exception as exc:
        mapped = remap(exc, httpx.Request(method, target))
        if mapped is None:
            raise
        raise mapped from exc
    finally:
        if task is not None:
            deadlines.leave(task)
