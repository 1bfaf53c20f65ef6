"""The outbound client against a real uvicorn receiver on 127.0.0.1.

The receiver counts every request it sees, so "refused" is proven by nothing arriving, not only
by an exception being raised."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from relay.delivery.http_client import make_client, request_capped
from relay.delivery.http_errors import BlockedDestination
from relay.vendors import base as vendor
from tests.support.servers import free_port, serve_in_thread

BIG = 5 * 1024 * 1024


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.paths: list[str] = []


COUNTER = Counter()


class Firehose:
    """What `/forever` wrote: a body with no end, so a client without a read cap never finishes.
    `sent` counts the bytes handed to the server for sending; `ended` is set once the stream
    stopped because the client went away."""

    CHUNK = 64 * 1024

    def __init__(self) -> None:
        self.sent = 0
        self.ended = threading.Event()


FIREHOSE = Firehose()


async def forever(request: Request) -> Response:
    async def stream() -> Any:
        try:
            # uvicorn keeps accepting writes after a hang-up, so the stream asks.
            while not await request.is_disconnected():
                FIREHOSE.sent += Firehose.CHUNK
                yield b"x" * Firehose.CHUNK
        finally:
            FIREHOSE.ended.set()

    return StreamingResponse(stream(), media_type="application/octet-stream")


async def trickle(request: Request) -> Response:
    """A receiver that answers at once and then sends its body a byte every 0.1 s, for ever:
    each read arrives well within any read timeout, so only a budget for the whole exchange
    ends it."""

    async def stream() -> Any:
        while not await request.is_disconnected():
            yield b"x"
            await asyncio.sleep(0.1)

    return StreamingResponse(stream(), media_type="application/octet-stream")


async def ok(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


async def headers(request: Request) -> Response:
    response = Response(b"ok", status_code=429, headers={"Retry-After": "7"})
    response.headers.append("X-Twice", "a")
    response.headers.append("x-twice", "b")
    return response


async def redirect(request: Request) -> Response:
    return RedirectResponse("/ok", status_code=302)


async def big(request: Request) -> Response:
    return Response(b"x" * BIG, media_type="application/octet-stream")


async def small(request: Request) -> Response:
    return PlainTextResponse("accepted")


async def hang(request: Request) -> Response:
    # Answer only once the client has gone, so the server thread can stop promptly.
    while (await request.receive())["type"] != "http.disconnect":
        pass
    return Response(status_code=204)


async def set_cookie(request: Request) -> Response:
    response = Response(status_code=204)
    response.set_cookie("session", "abc", path="/")
    return response


async def echo(request: Request) -> Response:
    return JSONResponse({"cookie": request.headers.get("cookie")})


async def echo_json(request: Request) -> Response:
    return JSONResponse(
        {
            "method": request.method,
            "content_type": request.headers.get("content-type"),
            "accept_encoding": request.headers.get("accept-encoding"),
            "body": (await request.body()).decode(),
        }
    )


def build_app() -> Any:
    app = Starlette(
        routes=[
            Route("/ok", ok, methods=["POST", "GET"]),
            Route("/redirect", redirect, methods=["POST"]),
            Route("/headers", headers, methods=["POST"]),
            Route("/big", big, methods=["POST", "GET"]),
            Route("/forever", forever, methods=["POST"]),
            Route("/small", small, methods=["POST"]),
            Route("/hang", hang, methods=["POST"]),
            Route("/trickle", trickle, methods=["POST"]),
            Route("/cookie", set_cookie, methods=["POST"]),
            Route("/echo", echo, methods=["POST"]),
            Route("/echo-json", echo_json, methods=["POST", "GET"]),
        ]
    )

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            COUNTER.count += 1
            COUNTER.paths.append(scope["path"])
        await app(scope, receive, send)

    return counting


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(build_app()) as url:
        yield url


@pytest.fixture
def port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


class FakeResolver(AbstractResolver):
    """Answers like DNS would for made-up names, so the send-time check is exercised on the
    resolver path without any real lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=port,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for addr in self.answers[host]
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "LOCALHOST.", "[::ffff:127.0.0.1]", "0x7f.1"],
)
async def test_guard_refuses_loopback_and_sends_nothing(port: int, host: str) -> None:
    before = COUNTER.count
    async with make_client(timeout=5, allow_private=False) as client:
        with pytest.raises(BlockedDestination) as info:
            await client.post(f"http://{host}:{port}/ok", content=b"{}")
        assert info.value.request.url.port == port
        with pytest.raises(BlockedDestination):
            await request_capped(client, "POST", f"http://{host}:{port}/ok", b"{}", {})
    assert COUNTER.count == before


async def test_guard_refuses_ipv6_loopback_literal() -> None:
    async with make_client(timeout=5, allow_private=False) as client:
        with pytest.raises(BlockedDestination):
            await client.post("http://[::1]:9/ok", content=b"{}")
        with pytest.raises(BlockedDestination):
            await client.post("http://169.254.169.254/latest/meta-data/", content=b"{}")


async def test_guard_checks_what_the_resolver_answers(port: int) -> None:
    """The rebinding case: a harmless-looking name whose DNS answer is loopback."""
    before = COUNTER.count
    resolver = FakeResolver(
        {"rebind.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "10.0.0.1"]}
    )
    async with make_client(timeout=5, allow_private=False, resolver=resolver) as client:
        for name in ("rebind.test", "mixed.test"):
            with pytest.raises(BlockedDestination, match="private"):
                await client.post(f"http://{name}:{port}/ok", content=b"{}")
    assert resolver.calls == 2
    assert COUNTER.count == before

    # With private addresses allowed the same answer is used for the connection itself.
    async with make_client(timeout=5, allow_private=True, resolver=resolver) as client:
        response = await client.post(f"http://rebind.test:{port}/ok", content=b"{}")
    assert response.status_code == 204
    assert COUNTER.count == before + 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_private_delivers(port: int, host: str) -> None:
    before = COUNTER.count
    async with make_client(timeout=5, allow_private=True) as client:
        response = await client.post(f"http://{host}:{port}/ok", content=b'{"a": 1}')
        status, excerpt, headers = await request_capped(
            client,
            "POST",
            f"http://{host}:{port}/small",
            b"{}",
            {"content-type": "application/json"},
        )
    assert response.status_code == 204
    assert (status, excerpt) == (200, b"accepted")
    assert headers["content-length"] == "8"
    assert COUNTER.count == before + 2


async def test_vendor_client_without_guard_reaches_loopback(base_url: str) -> None:
    async with make_client(timeout=5, allow_private=False, guard=False) as client:
        response = await client.get(f"{base_url}/ok")
    assert response.status_code == 204


async def test_redirects_are_not_followed(base_url: str) -> None:
    before = COUNTER.count
    async with make_client(timeout=5, allow_private=True) as client:
        response = await client.post(f"{base_url}/redirect", content=b"{}")
        assert response.status_code == 302
        assert response.headers["location"] == "/ok"
        status, _, headers = await request_capped(client, "POST", f"{base_url}/redirect", b"{}", {})
        assert status == 302
        assert headers["location"] == "/ok"
    assert COUNTER.paths[before:] == ["/redirect", "/redirect"]


@pytest.mark.parametrize(
    ("sent", "seen"),
    [
        ({}, "identity"),
        ({"x-accept-encodings": "no"}, "identity"),
        ({"Accept-Encoding": "gzip"}, "gzip"),
        ({"accept-ENCODING": "br"}, "br"),
    ],
)
async def test_the_answer_is_asked_uncompressed_unless_the_caller_asks_otherwise(
    base_url: str, sent: dict[str, str], seen: str
) -> None:
    async with make_client(timeout=5, allow_private=True) as client:
        status, body, _ = await request_capped(client, "POST", f"{base_url}/echo-json", b"{}", sent)
    assert status == 200
    assert json.loads(body)["accept_encoding"] == seen


async def test_request_capped_keeps_the_first_limit_bytes(base_url: str) -> None:
    async with make_client(timeout=10, allow_private=True) as client:
        status, excerpt, headers = await request_capped(
            client, "POST", f"{base_url}/big", b"{}", {}, limit=4096
        )
        assert status == 200
        assert excerpt == b"x" * 4096
        assert headers["content-length"] == str(BIG)
        _, tiny, _ = await request_capped(client, "POST", f"{base_url}/big", b"{}", {}, limit=10)
        assert tiny == b"x" * 10
        # The abandoned connection must not poison the pool for the next delivery.
        again = await client.post(f"{base_url}/ok", content=b"{}")
        assert again.status_code == 204


async def test_an_answers_headers_read_as_httpx_gives_them(base_url: str) -> None:
    """Names lower-cased, looked up in any case, a repeated header's values joined: as the
    httpx path reads them, though they are not copied into a dict per answer any more."""
    async with make_client(timeout=10, allow_private=True) as client:
        status, excerpt, got = await request_capped(
            client, "POST", f"{base_url}/headers", b"{}", {}
        )
        plain = await client.post(f"{base_url}/headers", content=b"{}")
    assert (status, excerpt) == (429, b"ok")
    assert got["retry-after"] == got["Retry-After"] == "7"
    assert got["x-twice"] == "a, b" == plain.headers["x-twice"]
    assert got.get("absent") is None and "absent" not in got
    assert set(got) == set(plain.headers.keys()) and len(got) == len(set(got))
    assert dict(got) == {k: plain.headers[k] for k in plain.headers.keys() if k != "date"} | {
        "date": got["date"]
    }


async def test_request_capped_reads_at_most_limit(base_url: str) -> None:
    """A receiver that streams for ever: only a client that stops at the cap and hangs up gets an
    answer at all (one that reads on runs into its time budget), and the receiver, which counts
    what it wrote, is cut off after about a socket buffer's worth, not after gigabytes."""
    FIREHOSE.sent = 0
    FIREHOSE.ended.clear()
    async with make_client(timeout=10, allow_private=True) as client:
        status, excerpt, _ = await request_capped(
            client, "POST", f"{base_url}/forever", b"{}", {}, limit=4096, total_timeout=8
        )
    assert status == 200
    assert excerpt == b"x" * 4096
    assert await asyncio.to_thread(FIREHOSE.ended.wait, 10), "the receiver saw the hang-up"
    # Loopback socket buffers plus the server's own write buffer hold a few MiB at most; a client
    # that read on would take gigabytes in its time budget.
    assert FIREHOSE.sent < 64 * 1024 * 1024, FIREHOSE.sent


async def test_hanging_receiver_times_out(base_url: str) -> None:
    # `/hang` never answers, so without a timeout these would wait for pytest's own; the bounds
    # are generous for a busy box and still far below the client timeout the budget must beat.
    async with make_client(timeout=1.0, allow_private=True) as client:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await client.post(f"{base_url}/hang", content=b"{}")
        assert time.monotonic() - started < 20
    async with make_client(timeout=60.0, allow_private=True) as client:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await request_capped(client, "POST", f"{base_url}/hang", b"{}", {}, total_timeout=0.5)
        assert time.monotonic() - started < 20


async def test_a_trickling_receiver_is_cut_off_by_the_total_budget(base_url: str) -> None:
    """Every byte comes within the read timeout (60 s), and the cap (4 KiB) is 7 minutes of
    bytes away: only the exchange's total budget ends it, as a timeout."""
    async with make_client(timeout=60.0, allow_private=True) as client:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await request_capped(
                client, "POST", f"{base_url}/trickle", b"{}", {}, limit=4096, total_timeout=1.0
            )
        assert time.monotonic() - started < 10


async def test_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    closed_port = free_port()
    async with make_client(timeout=5, allow_private=True) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{closed_port}/", content=b"{}")


async def test_cookies_do_not_carry_over(base_url: str) -> None:
    async with make_client(timeout=5, allow_private=True) as client:
        await client.post(f"{base_url}/cookie", content=b"{}")
        response = await client.post(f"{base_url}/echo", content=b"{}")
        assert response.json() == {"cookie": None}
        assert len(client.cookies) == 0


async def test_receiver_hanging_up_is_a_protocol_error_not_a_timeout() -> None:
    """A receiver that drops the connection without answering is reported as such."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def hang_up() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        async with make_client(timeout=5, allow_private=True) as client:
            with pytest.raises(httpx.TransportError) as info:
                await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
        assert isinstance(info.value, httpx.RemoteProtocolError | httpx.ReadError)
        assert not isinstance(info.value, httpx.TimeoutException)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


async def test_vendor_send_posts_json_and_answers_a_plain_answer(base_url: str) -> None:
    """`send` answers a plain `Answer` (status, body, lower-cased headers), not an httpx.Response:
    building one per poll cost about 50 us of a worker's CPU (bench/polling.py)."""
    async with make_client(timeout=5, allow_private=True, guard=False) as client:
        sent = await vendor.send(
            client, "POST", f"{base_url}/echo-json", headers={"x-api-key": "k"}, json={"a": "é"}
        )
        got = await vendor.send(client, "GET", f"{base_url}/echo-json", headers={})
    assert isinstance(sent, vendor.Answer) and sent.status_code == 200
    assert sent.headers["content-type"].startswith("application/json")
    assert vendor.body_json(sent) == {
        "method": "POST",
        "content_type": "application/json",
        "accept_encoding": "identity",
        "body": '{"a":"é"}',
    }
    assert vendor.body_json(got)["method"] == "GET"
    assert vendor.body_json(got)["body"] == ""  # a GET carries no body


async def test_vendor_answer_over_the_limit_is_transient(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vendor, "VENDOR_BODY_LIMIT", 1024 * 1024)
    async with make_client(timeout=5, allow_private=True, guard=False) as client:
        with pytest.raises(vendor.Transient, match="larger than"):
            await vendor.send(client, "GET", f"{base_url}/big", headers={})


async def test_vendor_that_hangs_is_a_transient_timeout(base_url: str) -> None:
    started = time.monotonic()
    async with make_client(timeout=0.5, allow_private=True, guard=False) as client:
        with pytest.raises(vendor.Transient, match="timed out"):
            await vendor.send(client, "POST", f"{base_url}/hang", headers={}, json={})
    assert time.monotonic() - started < 5


def test_a_socket_timeout_that_cannot_fire_first_is_left_out() -> None:
    """aiohttp re-arms its read timer on every chunk; one no shorter than the total budget
    would never be the one to fire."""
    from relay.delivery.http_client import _client_timeout

    same = _client_timeout(15.0, 15.0, 15.0, 15.0)
    # (the total is kept by relay/delivery/deadlines.py, not by an aiohttp timer per request)
    assert (same.total, same.sock_connect, same.sock_read, same.connect) == (None, None, None, None)
    shorter = _client_timeout(30.0, 5.0, 10.0, 40.0)
    assert (shorter.sock_connect, shorter.sock_read, shorter.connect) == (5.0, 10.0, None)
    unbounded = _client_timeout(None, 5.0, 10.0, 5.0)
    assert (unbounded.sock_connect, unbounded.sock_read, unbounded.connect) == (5.0, 10.0, 5.0)


@pytest.mark.parametrize(
    "content",
    [
        b'{"run": {"id": "wl_1", "n": 18446744073709551616}}',  # past 64 bits: exact
        b'{"n": -9223372036854775809, "m": 1}',
        b'{"n": 1234567890123456789012345678901234567890}',
        b'{"n": 123456789012345678, "id": "wl_1234567890123456789"}',  # digits in a string
        b'{"x": NaN, "y": "\\ud800"}',  # what orjson refuses and JSON allows
        b'{"run": {"id": "wl_1", "status": "queued", "credits": 25}}',
    ],
)
def test_a_vendor_answer_reads_as_the_standard_library_reads_it(content: bytes) -> None:
    """orjson reads an integer past 64 bits as a float: an answer with a run of 19 digits or
    more, found without a regex, goes to the standard library, so every number reads exactly."""
    got = vendor.body_json(vendor.Answer(200, content, {}))
    want = json.loads(content)
    assert json.dumps(got) == json.dumps(want)
