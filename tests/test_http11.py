"""The kept-alive exchange (relay/delivery/http11.py) against raw HTTP servers on 127.0.0.1 that
answer byte for byte what a test needs: kept and dropped connections, answers framed every way
HTTP/1.1 allows, bounds, DNS kept, and what it leaves to aiohttp. (tests/test_http_client.py
runs the client's whole contract, guard, budget and errors, over the same path.)"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.delivery import http11, http_request
from relay.delivery.http_client import make_client, request_capped
from tests.test_http_client import FakeResolver

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class Raw:
    """A server that reads each request (head and Content-Length body) and writes `answer(n)`
    for the n-th one, byte for byte; it notes connections, requests and how many it held at
    once."""

    def __init__(
        self,
        answer: Callable[[int], bytes],
        *,
        close_after: bool = False,
        hold: float = 0.0,
    ) -> None:
        self.answer = answer
        self.close_after = close_after
        self.hold = hold
        self.connections = 0
        self.closed = 0
        self.requests: list[bytes] = []
        self.active = 0
        self.peak = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Raw:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                self.active += 1
                self.peak = max(self.peak, self.active)
                if self.hold:
                    await asyncio.sleep(self.hold)
                self.active -= 1
                writer.write(self.answer(len(self.requests)))
                await writer.drain()
                if self.close_after:
                    break
        finally:
            self.closed += 1
            writer.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    c = make_client(timeout=5.0, allow_private=True)
    yield c
    await c.aclose()


async def post(client: httpx.AsyncClient, url: str, limit: int = 1024) -> tuple[int, bytes]:
    code, body, _ = await request_capped(client, "POST", url, b'{"a": 1}', {}, limit=limit)
    return code, body


async def test_requests_share_one_kept_alive_connection_and_go_as_aiohttp_sent_them(
    client: httpx.AsyncClient,
) -> None:
    async with Raw(lambda n: NO_CONTENT) as raw:
        for _ in range(3):
            assert await post(client, raw.url + "/hook?x=1") == (204, b"")
        assert raw.connections == 1 and len(raw.requests) == 3
        head, _, body = raw.requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
        assert lines[1] == b"Host: " + raw.url.removeprefix("http://").encode()
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        # a body without a content type goes as octet-stream, as aiohttp sends it
        assert fields[b"content-type"] == b"application/octet-stream"
        assert fields[b"content-length"] == b"8" and body == b'{"a": 1}'
        assert fields[b"accept-encoding"] == b"identity"


async def test_an_answer_past_the_limit_is_cut_and_its_connection_closed(
    client: httpx.AsyncClient,
) -> None:
    # Larger than what one read brings in: the answer is not at its end when the cap is reached.
    size = 4 * 1024 * 1024
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    async with Raw(lambda n: big) as raw:
        assert await post(client, raw.url, limit=100) == (200, b"x" * 100)
        assert await post(client, raw.url, limit=100) == (200, b"x" * 100)
        assert raw.connections == 2  # the unread rest went with the first connection


async def test_an_answer_of_exactly_the_limit_keeps_its_connection(
    client: httpx.AsyncClient,
) -> None:
    exact = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 100
    async with Raw(lambda n: exact) as raw:
        assert await post(client, raw.url, limit=100) == (200, b"y" * 100)
        assert await post(client, raw.url, limit=100) == (200, b"y" * 100)
        assert raw.connections == 1


async def test_a_chunked_answer_is_read_whole_and_its_connection_kept(
    client: httpx.AsyncClient,
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    async with Raw(lambda n: chunked) as raw:
        assert await post(client, raw.url) == (200, b"abcde")
        assert await post(client, raw.url) == (200, b"abcde")
        assert raw.connections == 1


async def test_an_answer_without_length_ends_with_its_connection(
    client: httpx.AsyncClient,
) -> None:
    unframed = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    async with Raw(lambda n: unframed, close_after=True) as raw:
        assert await post(client, raw.url) == (200, b"until the end")
        assert await post(client, raw.url) == (200, b"until the end")
        assert raw.connections == 2


async def test_an_interim_answer_is_passed_over(client: httpx.AsyncClient) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
    async with Raw(lambda n: interim) as raw:
        code, body, headers = await request_capped(client, "POST", raw.url, b"x", {}, limit=10)
        assert (code, body, headers["content-length"]) == (202, b"ok", "2")


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    client: httpx.AsyncClient,
) -> None:
    # The server closes after each answer without saying so (no `Connection: close`).
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with Raw(lambda n: answer, close_after=True) as raw:
        assert await post(client, raw.url) == (200, b"ok")
        for _ in range(50):  # until the close has reached the client
            if raw.closed:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert await post(client, raw.url) == (200, b"ok")
        assert raw.connections == 2


async def test_connection_close_is_honoured(client: httpx.AsyncClient) -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with Raw(lambda n: answer) as raw:
        assert await post(client, raw.url) == (200, b"ok")
        assert await post(client, raw.url) == (200, b"ok")
        assert raw.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"this is not HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",  # then hangs up
    ],
    ids=["malformed", "cut short"],
)
async def test_a_broken_answer_is_a_protocol_error(
    client: httpx.AsyncClient, answer: bytes
) -> None:
    async with Raw(lambda n: answer, close_after=True) as raw:
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, raw.url)


async def test_no_more_than_max_per_host_at_once() -> None:
    client = make_client(timeout=5.0, allow_private=True, max_per_host=2)
    try:
        async with Raw(lambda n: NO_CONTENT, hold=0.1) as raw:
            results = await asyncio.gather(*(post(client, raw.url) for _ in range(6)))
            assert results == [(204, b"")] * 6
            assert raw.peak == 2 and raw.connections == 2
    finally:
        await client.aclose()


async def test_a_name_is_resolved_once_while_its_answer_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = FakeResolver({"receiver.test": ["127.0.0.1"]})
    client = make_client(timeout=5.0, allow_private=True, resolver=resolver)
    try:
        # Each answer closes its connection, so each request connects (and needs the address).
        async with Raw(lambda n: NO_CONTENT, close_after=True) as raw:
            url = raw.url.replace("127.0.0.1", "receiver.test")
            for _ in range(3):
                assert await post(client, url) == (204, b"")
                await asyncio.sleep(0.02)
            assert raw.connections == 3 and resolver.calls == 1
            monkeypatch.setattr(http11, "DNS_CACHE_SECONDS", 0.0)
            http_request._parse.cache_clear()
            pool = client._transport.pool  # type: ignore[attr-defined]
            pool._dns.clear()
            for _ in range(2):
                assert await post(client, url) == (204, b"")
                await asyncio.sleep(0.02)
            assert resolver.calls == 3  # nothing kept: every connection asked again
    finally:
        await client.aclose()


async def test_idle_connections_end_with_their_keep_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http11, "KEEPALIVE_SECONDS", 0.2)
    client = make_client(timeout=5.0, allow_private=True)
    try:
        async with Raw(lambda n: NO_CONTENT) as raw:
            assert await post(client, raw.url) == (204, b"")
            pool = client._transport.pool  # type: ignore[attr-defined]
            assert sum(map(len, pool._idle.values())) == 1
            await asyncio.sleep(0.5)  # the sweep ran
            assert pool._idle == {} and pool._hosts == {} and raw.closed == 1
    finally:
        await client.aclose()


async def test_the_sweep_keeps_the_bound_of_a_host_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps run while one exchange holds the host's only slot and two more wait for it (one
    of them behind the bound of all): the bound they wait on stays, so one at a time it is."""
    monkeypatch.setattr(http11, "KEEPALIVE_SECONDS", 0.05)
    client = make_client(timeout=5.0, allow_private=True, max_connections=1, max_per_host=1)
    try:
        async with Raw(lambda n: NO_CONTENT, hold=0.3) as raw:
            results = await asyncio.gather(*(post(client, raw.url) for _ in range(3)))
            assert results == [(204, b"")] * 3 and raw.peak == 1
            await asyncio.sleep(0.3)
            pool = client._transport.pool  # type: ignore[attr-defined]
            assert pool._hosts == {} and pool._busy == {} and pool._idle == {}
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1/runs/run_0001",
        "http://127.0.0.1:8080/v1/runs/run_0001/",
        "https://vendor.example/v1/runs/R-9.x~y_z",
        "https://vendor.example/a/./b/../runs/abc",
        "https://vendor.example/a//runs/abc",
        "https://vendor.example/a/%7e/runs/abc",
        "https://vendor.example/a%2Fb/abc",
        "https://vendor.example/runs/a%20b",
        "https://vendor.example/runs/..",
        "https://vendor.example/runs/.",
        "https://vendor.example/runs/abc?x=/y",
        "https://vendor.example/runs/abc#frag",
        "https://bücher.example/runs/abc",
        "https://[::1]:8443/runs/abc",
        "http://vendor.example",
        "http://vendor.example/abc",
        "http://user:secret@vendor.example/runs/abc",
        "ftp://vendor.example/runs/abc",
        "http:///runs/abc",
    ],
)
def test_a_url_goes_where_its_whole_parse_says(url: str) -> None:
    """A URL's last segment appended to its parent's cached parse gives exactly the parse of the
    whole URL (yarl's, as aiohttp sends it)."""
    http_request._parse.cache_clear()
    assert http_request.target(url) == http_request._parse(url)


def test_run_urls_share_their_parent_parse() -> None:
    """A poll's URL is its run's own: the parse cached is the vendor's, not one per run."""
    http_request._parse.cache_clear()
    for n in range(10_000):
        where = http_request.target(f"http://127.0.0.1:8080/v1/runs/run_{n:05d}")
        assert where is not None and where.path == f"/v1/runs/run_{n:05d}"
    assert http_request._parse.cache_info().currsize == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@127.0.0.1:1/hook",  # credentials: aiohttp turns them into a header
        "ftp://127.0.0.1/hook",
        "http:///nohost",
    ],
)
def test_what_it_would_not_send_as_aiohttp_does_is_left_to_aiohttp(url: str) -> None:
    assert http_request.target(url) is None


def test_a_header_that_would_split_the_request_is_left_to_aiohttp() -> None:
    where = http_request.target("http://127.0.0.1:8080/hook")
    assert where is not None and where.authority == "127.0.0.1:8080"
    assert http_request.request_head("POST", where, {"x-a": "v\r\nx-injected: 1"}, 1) is None
    assert http_request.request_head("POST", where, {"bad name": "v"}, 1) is None
    assert http_request.request_head("POST", where, {"host": "elsewhere"}, 1) is None
    assert http_request.request_head("HEAD", where, {}, 0) is None
    assert http_request.request_head("GET", where, {}, 0) == (
        b"GET /hook HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    )
    v6 = http_request.target("https://[::1]/a%20b?q=1")
    assert v6 is not None and (v6.host, v6.port, v6.tls, v6.literal) == ("::1", 443, True, True)
    assert (v6.authority, v6.path) == ("[::1]", "/a%20b?q=1")


async def test_a_header_with_a_line_break_is_refused_and_nothing_injected(
    client: httpx.AsyncClient,
) -> None:
    async with Raw(lambda n: NO_CONTENT) as raw:
        with pytest.raises(ValueError):
            await request_capped(client, "POST", raw.url, b"x", {"x-a": "v\r\nx-injected: 1"})
        assert not any(b"x-injected" in r for r in raw.requests)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_is_verified_and_a_trusted_receiver_is_reached(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    raw = Raw(lambda n: NO_CONTENT)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0, ssl=server_side)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    client = make_client(timeout=5.0, allow_private=True)
    try:
        # The client trusts the public CAs only: a certificate nobody signed is refused.
        with pytest.raises(httpx.ConnectError):
            await post(client, url)
        assert raw.requests == []
        # Trusting it (as a private CA would be), the POST goes over TLS on a kept connection.
        client._transport.pool._ssl.load_verify_locations(cert)  # type: ignore[attr-defined]
        assert await post(client, url) == (204, b"")
        assert await post(client, url) == (204, b"")
        assert len(raw.requests) == 2 and raw.connections == 1  # (the refused one never got in)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
