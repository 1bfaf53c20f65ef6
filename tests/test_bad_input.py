"""Invariant 5: bad input gets a clear 4xx with a JSON body `{"error", "message"}` (plus `field`
when one field is at fault, named in the message too), and it changes nothing in Redis.

Every request here is made as tenant t3, and "changes nothing" is checked against a snapshot of
all `relay:*` keys and the due sets (see tests/support/audit.py) taken just before it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.support import audit
from tests.support.stack import TENANT_KEYS, Stack, unique

TENANT = "t3"
GOOD_DOMAIN = "bad-input.example"


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(TENANT) as client:
        yield client


@pytest.fixture(scope="module")
def sub(api: httpx.Client) -> dict[str, Any]:
    """A t3 subscription that no event matches, so nothing but these tests ever touches it."""
    response = api.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/never", "filter": {"providers": ["no-such-provider"]}},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error_shape(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert set(body) <= {"error", "message", "field"}, body
    if field is not None:
        assert body.get("field") == field, body
        assert field in body["message"], body
    return body


def rejected(
    rdb: redis.Redis,
    client: httpx.Client,
    method: str,
    path: str,
    *,
    status: int = 400,
    field: str | None = None,
    error: str | None = None,
    **kwargs: Any,
) -> dict:
    before = audit.take(rdb)
    response = client.request(method, path, **kwargs)
    body = assert_error_shape(response, status, field)
    if error is not None:
        assert body["error"] == error, body
    assert audit.changes(rdb, before, TENANT) == []
    return body


def each(cases: list[Any], check: Callable[..., Any]) -> None:
    """Run `check(*case)` for every case and report all failing cases at once: one test item per
    matrix keeps the per-test fixtures of the shared stack from dominating the run time."""
    failures = []
    for case in cases:
        args = case if isinstance(case, tuple) else (case,)
        try:
            check(*args)
        except AssertionError as exc:
            failures.append(f"{args!r:.200}: {str(exc)[:400]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


def citedy(**input_: Any) -> dict[str, Any]:
    return {"provider": "citedy", "input": {"domain": GOOD_DOMAIN, **input_}}


# --- the audit itself must be able to see a change --------------------------------------------


def test_audit_sees_an_accepted_request(rdb: redis.Redis, api: httpx.Client) -> None:
    before = audit.take(rdb)
    response = api.post("/v1/runs", json={"provider": "citedy", "upstream_run_id": unique("r")})
    assert response.status_code == 202, response.text
    found = audit.changes(rdb, before, TENANT)
    assert any(f"relay:run:{response.json()['id']}" in item for item in found), found
    assert any("relay:due:poll" in item for item in found), found
    api.delete(f"/v1/runs/{response.json()['id']}")


def test_audit_sees_changed_and_deleted_values(
    rdb: redis.Redis, api: httpx.Client, sub: dict[str, Any]
) -> None:
    """Not only new keys: a field rewritten in a hash the tenant owns, a member gone from its
    index and a key deleted are all reported (the shapes a rejected PATCH or DELETE that still
    wrote something would leave)."""
    key = f"relay:sub:{sub['id']}"
    index = f"relay:tenant:{TENANT}:subs"
    stray = f"relay:idem:{TENANT}:{unique('audit')}"
    rdb.set(stray, "x")
    original = rdb.hget(key, "description")
    try:
        before = audit.take(rdb)
        assert audit.changes(rdb, before, TENANT) == []
        rdb.hset(key, "description", "changed behind the api's back")
        rdb.srem(index, sub["id"])
        rdb.delete(stray)
        found = audit.changes(rdb, before, TENANT)
        assert any(f.startswith(f"changed key {key} ") for f in found), found
        # (changed, or deleted when the fixture's subscription was the only member)
        assert any(
            f.startswith(f"changed key {index} ") or f == f"deleted key {index}" for f in found
        ), found
        assert f"deleted key {stray}" in found, found
    finally:
        if original is None:
            rdb.hdel(key, "description")
        else:
            rdb.hset(key, "description", original)
        rdb.sadd(index, sub["id"])
        rdb.delete(stray)


# --- authentication ---------------------------------------------------------------------------

KEY = TENANT_KEYS[TENANT]
BAD_AUTH: list[dict[str, str]] = [
    {},
    {"authorization": ""},
    {"authorization": "Bearer"},
    {"authorization": "Bearer   x"},
    {"authorization": "Bearer wrong-key-0123456789"},
    {"authorization": f"Bearer {KEY}x"},
    {"authorization": f"Bearer {KEY[:-1]}"},
    {"authorization": f"Bearer {KEY.upper()}"},
    {"authorization": f"Bearer {TENANT_KEYS['t1']}{KEY}"},
    {"authorization": KEY},
    {"authorization": "Basic " + base64.b64encode(f"t3:{KEY}".encode()).decode()},
    {"authorization": f"Token {KEY}"},
    {"x-api-key": KEY},
]
AUTH_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("POST", "/v1/runs", citedy()),
    ("GET", "/v1/runs", None),
    ("POST", "/v1/subscriptions", {"url": "http://127.0.0.1:9/x"}),
    ("GET", "/v1/subscriptions", None),
    ("POST", "/v1/watches", {"agent_id": "agent-1"}),
    ("POST", "/v1/callback-secret", None),
]


def test_bad_api_key_is_401(rdb: redis.Redis, stack: Stack) -> None:
    def check(headers: dict[str, str], method: str, path: str, body: Any) -> None:
        with httpx.Client(base_url=stack.api_url, timeout=10, headers=headers) as anon:
            result = rejected(rdb, anon, method, path, status=401, error="unauthorized", json=body)
        assert KEY not in json.dumps(result)

    each([(h, *e) for h in BAD_AUTH for e in AUTH_ENDPOINTS], check)


def test_401_names_the_scheme(stack: Stack) -> None:
    response = httpx.get(stack.api_url + "/v1/runs", timeout=10)
    assert_error_shape(response, 401)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


# --- routing ----------------------------------------------------------------------------------


UNKNOWN_ROUTES = [
    ("GET", "/nope"),
    ("GET", "/v1"),
    ("GET", "/v1/nope"),
    ("POST", "/v2/runs"),
    ("GET", "/v1/runs/x/y"),
    ("POST", "/v1/runs/x/poll"),
    ("GET", "/v1/subscriptions/x/y/z"),
    ("POST", "/v1/event"),
    ("GET", "/admin"),
]


def test_unknown_route_is_404(rdb: redis.Redis, api: httpx.Client, stack: Stack) -> None:
    def check(method: str, path: str) -> None:
        rejected(rdb, api, method, path, status=404, error="not_found")
        with httpx.Client(base_url=stack.api_url, timeout=10) as anon:
            rejected(rdb, anon, method, path, status=404, error="not_found")

    each(UNKNOWN_ROUTES, check)


WRONG_METHODS = [
    ("PUT", "/v1/runs"),
    ("DELETE", "/v1/runs"),
    ("PATCH", "/v1/runs/run_x"),
    ("GET", "/v1/runs/run_x/refresh"),
    ("PUT", "/v1/subscriptions"),
    ("POST", "/v1/subscriptions/sub_x"),
    ("GET", "/v1/subscriptions/sub_x/recover"),
    ("GET", "/v1/events/evt_x/redeliver"),
    ("POST", "/v1/events"),
    ("PUT", "/v1/watches/wch_x"),
    ("GET", "/v1/callback-secret"),
    ("DELETE", "/healthz"),
    ("POST", "/openapi.json"),
]


def test_wrong_method_is_405(rdb: redis.Redis, api: httpx.Client) -> None:
    def check(method: str, path: str) -> None:
        before = audit.take(rdb)
        response = api.request(method, path)
        assert_error_shape(response, 405)
        assert response.json()["error"] == "method_not_allowed"
        assert response.headers.get("allow"), response.headers
        assert audit.changes(rdb, before, TENANT) == []

    each(WRONG_METHODS, check)


# --- the body as a whole ----------------------------------------------------------------------

JSON = {"content-type": "application/json"}
BODY_ENDPOINTS = ["/v1/runs", "/v1/subscriptions", "/v1/watches"]


INVALID_JSON = [
    b"{",
    b"{'provider': 'citedy'}",
    b'{"provider": "citedy",}',
    b"",
    b"   \n",
    b'{"provider": "\xff\xfe"}',
    b'{"metadata": {"x": NaN}}',
    b'{"metadata": {"x": Infinity}}',
    b'{"metadata": {"x": -Infinity}}',
    b'{"metadata": {"x": 1e999}}',
    b'{"description": "\\ud800", "metadata": {"k": "\\udfff"}}',
    b'{"metadata": {"\\udbff": 1}}',
    b"[" * 20000 + b"]" * 20000,
    b'{"metadata": {"a": ' + b'{"a": ' * 100 + b"1" + b"}" * 101 + b"}",
    b'{"metadata": {"n": ' + b"9" * 5000 + b"}}",
    b'{"provider": "citedy"} trailing',
    b'{"provider": "citedy"}{"provider": "citedy"}',
    b"\x00",
]


def test_invalid_json_is_400(rdb: redis.Redis, api: httpx.Client) -> None:
    def check(path: str, raw: bytes) -> None:
        body = rejected(rdb, api, "POST", path, status=400, content=raw, headers=JSON)
        assert body["error"] == "invalid_json", body

    each([(p, raw) for p in BODY_ENDPOINTS for raw in INVALID_JSON], check)


def test_non_object_json_is_400(rdb: redis.Redis, api: httpx.Client) -> None:
    values = [[], [{"provider": "citedy"}], "citedy", 1, 1.5, True, None]

    def check(path: str, value: Any) -> None:
        raw = json.dumps(value).encode()
        body = rejected(rdb, api, "POST", path, status=400, content=raw, headers=JSON)
        assert "object" in body["message"], body

    each([(p, v) for p in BODY_ENDPOINTS for v in values], check)


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_oversized_body_is_413(rdb: redis.Redis, api: httpx.Client, path: str) -> None:
    big = json.dumps({**citedy(), "metadata": {"pad": "x" * (64 * 1024)}}).encode()
    rejected(
        rdb, api, "POST", path, status=413, error="payload_too_large", content=big, headers=JSON
    )


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_oversized_chunked_body_is_413(rdb: redis.Redis, api: httpx.Client, path: str) -> None:
    """No content-length to trust: the cap is enforced while streaming."""

    def chunks() -> Iterator[bytes]:
        yield b'{"metadata": {"pad": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}}'

    before = audit.take(rdb)
    response = api.post(path, content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error_shape(response, 413)
    assert audit.changes(rdb, before, TENANT) == []


def test_body_just_under_the_cap_is_parsed(rdb: redis.Redis, api: httpx.Client) -> None:
    """The 413 is about size, not a blanket refusal of big bodies: 60 KB gets validated."""
    raw = json.dumps({**citedy(), "description": "x" * 60_000}).encode()
    assert len(raw) < 64 * 1024
    rejected(
        rdb, api, "POST", "/v1/runs", status=400, field="description", content=raw, headers=JSON
    )


CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "text/json",
]


def test_wrong_content_type_is_415(rdb: redis.Redis, api: httpx.Client) -> None:
    raw = json.dumps(citedy()).encode()

    def check(path: str, ctype: str) -> None:
        rejected(
            rdb,
            api,
            "POST",
            path,
            status=415,
            error="unsupported_media_type",
            content=raw,
            headers={"content-type": ctype},
        )

    each([(p, c) for p in BODY_ENDPOINTS for c in CONTENT_TYPES], check)


# --- POST /v1/runs: the relay's own fields ----------------------------------------------------

RUN_CASES = [
    ({"input": {"domain": GOOD_DOMAIN}}, "provider"),
    ({"provider": "nope", "input": {"domain": GOOD_DOMAIN}}, "provider"),
    ({"provider": "", "input": {"domain": GOOD_DOMAIN}}, "provider"),
    ({"provider": 1, "input": {"domain": GOOD_DOMAIN}}, "provider"),
    ({"provider": "citedy"}, "input"),
    ({"provider": "citedy", "input": {"domain": GOOD_DOMAIN}, "upstream_run_id": "r1"}, "input"),
    ({"provider": "citedy", "input": "example.com"}, "input"),
    ({"provider": "autoposting", "upstream_run_id": "r1"}, "agent_id"),
    ({"provider": "autoposting", "agent_id": "", "upstream_run_id": "r1"}, "agent_id"),
    ({"provider": "citedy", "agent_id": "a1", "upstream_run_id": "r1"}, "agent_id"),
    ({"provider": "citedy", "agent_id": "a1", "input": {"domain": GOOD_DOMAIN}}, "agent_id"),
    ({"provider": "autoposting", "agent_id": "a1", "input": {"x": 1}}, "input"),
    ({**citedy(), "metadata": {"pad": "x" * 4100}}, "metadata"),
    ({**citedy(), "metadata": {f"k{i}": i for i in range(600)}}, "metadata"),
    ({**citedy(), "metadata": ["not", "an", "object"]}, "metadata"),
    ({**citedy(), "callback_url": "ftp://127.0.0.1/hook"}, "callback_url"),
    ({**citedy(), "callback_url": "file:///etc/passwd"}, "callback_url"),
    ({**citedy(), "callback_url": "javascript:alert(1)"}, "callback_url"),
    ({**citedy(), "callback_url": "127.0.0.1/hook"}, "callback_url"),
    ({**citedy(), "callback_url": "http://"}, "callback_url"),
    ({**citedy(), "callback_url": "http://user:pw@127.0.0.1/hook"}, "callback_url"),
    ({**citedy(), "callback_url": "http://127.0.0.1/a b"}, "callback_url"),
    ({**citedy(), "callback_url": "http://127.0.0.1/" + "a" * 2048}, "callback_url"),
    ({**citedy(), "extra": 1}, "extra"),
    ({**citedy(), "Provider": "citedy"}, "Provider"),
]
for bad_id in ["a/b", "..", "../x", "x/../y", "%2e%2e", "", ".hidden", "a b", "a" * 129, "a\nb"]:
    RUN_CASES.append(({"provider": "citedy", "upstream_run_id": bad_id}, "upstream_run_id"))
    RUN_CASES.append(
        ({"provider": "autoposting", "agent_id": bad_id, "upstream_run_id": "r1"}, "agent_id")
    )


def test_bad_run_request_is_400(rdb: redis.Redis, api: httpx.Client) -> None:
    def check(body: dict[str, Any], field: str) -> None:
        rejected(rdb, api, "POST", "/v1/runs", status=400, field=field, json=body)

    each(RUN_CASES, check)


# --- POST /v1/runs: Citedy's CreateWarmLeadRunRequest rules -----------------------------------

CITEDY_CASES = [
    ({"domain": "example.com/about"}, "input.domain"),
    ({"domain": "https://example.com/pricing?x=1"}, "input.domain"),
    ({"domain": "example.com?q=1"}, "input.domain"),
    ({"domain": "https://www.linkedin.com/company/acme"}, "input.domain"),
    ({"domain": "linkedin.com"}, "input.domain"),
    ({"domain": "www.facebook.com"}, "input.domain"),
    ({"domain": "x.com"}, "input.domain"),
    ({"domain": "acme.tiktok.com"}, "input.domain"),
    ({"domain": ""}, "input.domain"),
    ({"domain": "   "}, "input.domain"),
    ({"domain": "a" * 64 + ".com"}, "input.domain"),  # a 64-character label
    ({"domain": "a" * 250 + ".com"}, "input.domain"),  # 254 characters
    ({"domain": "localhost"}, "input.domain"),
    ({"domain": "192.168.0.1"}, "input.domain"),
    ({"domain": "[::1]"}, "input.domain"),
    ({"domain": "ftp://example.com"}, "input.domain"),
    ({"domain": "user@example.com"}, "input.domain"),
    ({"domain": "exa mple.com"}, "input.domain"),
    ({"domain": "-bad-.com"}, "input.domain"),
    ({"domain": "example.com:99999"}, "input.domain"),
    ({"domain": 42}, "input.domain"),
    ({"domain": None}, "input.domain"),
    ({"domain": ["example.com"]}, "input.domain"),
    ({"icp": "bad"}, "input.icp"),
    ({"icp": ""}, "input.icp"),
    ({"icp": None}, "input.icp"),
    ({"buyerRoles": [f"role {i}" for i in range(7)]}, "input.buyerRoles"),
    ({"buyerRoles": ["r" * 81]}, "input.buyerRoles.0"),
    ({"buyerRoles": ["ok", ""]}, "input.buyerRoles.1"),
    ({"buyerRoles": "CMO"}, "input.buyerRoles"),
    ({"buyerRoles": [1]}, "input.buyerRoles.0"),
    ({"maxContacts": 0}, "input.maxContacts"),
    ({"maxContacts": 4}, "input.maxContacts"),
    ({"maxContacts": -1}, "input.maxContacts"),
    ({"maxContacts": True}, "input.maxContacts"),
    ({"maxContacts": 2.0}, "input.maxContacts"),
    ({"maxContacts": "2"}, "input.maxContacts"),
    ({"maxContacts": None}, "input.maxContacts"),
    ({"drafts": 0}, "input.drafts"),
    ({"drafts": 4}, "input.drafts"),
    ({"drafts": False}, "input.drafts"),
    ({"drafts": 1.5}, "input.drafts"),
    ({"freshnessDays": 6}, "input.freshnessDays"),
    ({"freshnessDays": 366}, "input.freshnessDays"),
    ({"freshnessDays": "90"}, "input.freshnessDays"),
    ({"freshnessDays": 90.0}, "input.freshnessDays"),
    ({"freshnessDays": True}, "input.freshnessDays"),
    ({"idempotencyKey": "1234567"}, "input.idempotencyKey"),
    ({"idempotencyKey": "k" * 129}, "input.idempotencyKey"),
    ({"idempotencyKey": 12345678}, "input.idempotencyKey"),
    ({"unknownField": 1}, "input.unknownField"),
    ({"callbackUrl": "http://127.0.0.1/"}, "input.callbackUrl"),
]


def test_bad_citedy_input_is_400(rdb: redis.Redis, api: httpx.Client) -> None:
    def check(input_: dict[str, Any], field: str) -> None:
        body = {"provider": "citedy", "input": {"domain": GOOD_DOMAIN, **input_}}
        rejected(rdb, api, "POST", "/v1/runs", status=400, field=field, json=body)

    each(CITEDY_CASES, check)


def test_citedy_input_without_domain_is_400(rdb: redis.Redis, api: httpx.Client) -> None:
    body = {"provider": "citedy", "input": {"icp": "vertical-saas"}}
    rejected(rdb, api, "POST", "/v1/runs", status=400, field="input.domain", json=body)


def test_citedy_boundaries_are_accepted(rdb: redis.Redis, api: httpx.Client) -> None:
    """The other side of each rule: the limits themselves pass, so the 400s above are about the
    rule and not about something else in the body."""
    input_ = {
        "domain": "https://www." + "b" * 63 + ".example/",
        "icp": "seo-geo-agency",
        "buyerRoles": ["r" * 80] * 6,
        "maxContacts": 3,
        "drafts": 1,
        "freshnessDays": 365,
        "idempotencyKey": unique("idem-key-"),
    }
    response = api.post("/v1/runs", json={"provider": "citedy", "input": input_})
    assert response.status_code == 202, response.text
    api.delete(f"/v1/runs/{response.json()['id']}")


# --- Idempotency-Key --------------------------------------------------------------------------


def test_idempotency_key_same_body_same_run_other_body_409(
    rdb: redis.Redis, api: httpx.Client
) -> None:
    key = unique("idem-")
    body = {**citedy(), "metadata": {"crm": key}}
    first = api.post("/v1/runs", json=body, headers={"idempotency-key": key})
    assert first.status_code == 202, first.text
    run_id = first.json()["id"]

    before = audit.take(rdb)
    again = api.post("/v1/runs", json=body, headers={"idempotency-key": key})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == run_id
    assert audit.changes(rdb, before, TENANT) == []

    other = {**citedy(), "metadata": {"crm": key + "-other"}}
    result = rejected(
        rdb,
        api,
        "POST",
        "/v1/runs",
        status=409,
        field="Idempotency-Key",
        error="idempotency_conflict",
        json=other,
        headers={"idempotency-key": key},
    )
    assert result["error"] == "idempotency_conflict"
    runs = api.get("/v1/runs", params={"limit": 200}).json()["data"]
    assert [r["id"] for r in runs].count(run_id) == 1
    assert not any(r["metadata"] == {"crm": key + "-other"} for r in runs)
    api.delete(f"/v1/runs/{run_id}")


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_bad_idempotency_key_is_400(rdb: redis.Redis, api: httpx.Client, key: str) -> None:
    rejected(
        rdb,
        api,
        "POST",
        "/v1/runs",
        status=400,
        field="Idempotency-Key",
        json=citedy(),
        headers={"idempotency-key": key},
    )


# --- subscriptions ----------------------------------------------------------------------------

SUB_CASES = [
    ({}, "url"),
    ({"url": ""}, "url"),
    ({"url": None}, "url"),
    ({"url": 5}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": "ftp://127.0.0.1/hook"}, "url"),
    ({"url": "127.0.0.1/hook"}, "url"),
    ({"url": "http://"}, "url"),
    ({"url": "http://user:pw@127.0.0.1/hook"}, "url"),
    ({"url": "http://127.0.0.1:0/hook"}, "url"),
    ({"url": "http://127.0.0.1:99999/hook"}, "url"),
    ({"url": "http://127.0.0.1\\@evil/hook"}, "url"),
    ({"url": "http://127.0.0.1/" + "a" * 2048}, "url"),
    (
        {"url": "http://127.0.0.1/h", "filter": {"event_types": ["run.exploded"]}},
        "filter.event_types",
    ),
    ({"url": "http://127.0.0.1/h", "filter": {"event_types": "ping"}}, "filter.event_types"),
    ({"url": "http://127.0.0.1/h", "filter": {"providers": [""]}}, "filter.providers"),
    ({"url": "http://127.0.0.1/h", "filter": {"statuses": ["s" * 65]}}, "filter.statuses"),
    ({"url": "http://127.0.0.1/h", "filter": {"colour": ["red"]}}, "filter.colour"),
    ({"url": "http://127.0.0.1/h", "filter": ["ping"]}, "filter"),
    ({"url": "http://127.0.0.1/h", "description": "d" * 257}, "description"),
    ({"url": "http://127.0.0.1/h", "secret": "whsec_mine"}, "secret"),
    ({"url": "http://127.0.0.1/h", "enabled": False}, "enabled"),
]


def test_bad_subscription_is_400(rdb: redis.Redis, api: httpx.Client) -> None:
    def check(body: dict[str, Any], field: str) -> None:
        rejected(rdb, api, "POST", "/v1/subscriptions", status=400, field=field, json=body)

    each(SUB_CASES, check)


PATCH_CASES = [
    ({"unknown": 1}, "unknown"),
    ({"secret": "whsec_x"}, "secret"),
    ({"enabled": "yes"}, "enabled"),
    ({"enabled": 1}, "enabled"),
    ({"url": ""}, "url"),
    ({"url": "ftp://127.0.0.1/x"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"filter": {"event_types": ["nope"]}}, "filter.event_types"),
    ({"description": "d" * 257}, "description"),
    ({"enabled": False, "bogus": True}, "bogus"),
    ({"enabled": False, "url": "gopher://127.0.0.1/"}, "url"),
]


def test_bad_patch_is_400_and_changes_nothing(
    rdb: redis.Redis, api: httpx.Client, sub: dict[str, Any]
) -> None:
    key = f"relay:sub:{sub['id']}"
    path = f"/v1/subscriptions/{sub['id']}"

    def check(body: dict[str, Any], field: str) -> None:
        stored = rdb.hgetall(key)
        rejected(rdb, api, "PATCH", path, status=400, field=field, json=body)
        assert rdb.hgetall(key) == stored

    each(PATCH_CASES, check)
    assert api.get(path).json()["enabled"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "since"),
        ({"since": None}, "since"),
        ({"since": -1}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "1700000000"}, "since"),
        ({"since": True}, "since"),
        ({"since": 0, "until": 1}, "until"),
    ],
)
def test_bad_recover_is_400(
    rdb: redis.Redis, api: httpx.Client, sub: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    rejected(
        rdb,
        api,
        "POST",
        f"/v1/subscriptions/{sub['id']}/recover",
        status=400,
        field=field,
        json=body,
    )


def test_recover_without_body_is_400(
    rdb: redis.Redis, api: httpx.Client, sub: dict[str, Any]
) -> None:
    rejected(rdb, api, "POST", f"/v1/subscriptions/{sub['id']}/recover", status=400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subscription_id": "a/b"}, "subscription_id"),
        ({"subscription_id": 1}, "subscription_id"),
        ({"sub": "x"}, "sub"),
    ],
)
def test_bad_redeliver_is_400(
    rdb: redis.Redis, api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    rejected(rdb, api, "POST", "/v1/events/evt_none/redeliver", status=400, field=field, json=body)


# --- watches ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent_id"),
        ({"agent_id": ""}, "agent_id"),
        ({"agent_id": "../x"}, "agent_id"),
        ({"agent_id": "a/b"}, "agent_id"),
        ({"agent_id": 7}, "agent_id"),
        ({"provider": "citedy", "agent_id": "a1"}, "provider"),
        ({"agent_id": "a1", "include_existing": "yes"}, "include_existing"),
        ({"agent_id": "a1", "metadata": {"pad": "x" * 4100}}, "metadata"),
        ({"agent_id": "a1", "interval": 5}, "interval"),
    ],
)
def test_bad_watch_is_400(
    rdb: redis.Redis, api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    rejected(rdb, api, "POST", "/v1/watches", status=400, field=field, json=body)


# --- query parameters of the lists ------------------------------------------------------------

LIST_CASES = [
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "-5"}, "limit"),
    ({"limit": "abc"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"limit": ""}, "limit"),
    ({"limit": "99999999999999999999999"}, "limit"),
    ({"cursor": "garbage"}, "cursor"),
    ({"cursor": "nan:run_x"}, "cursor"),
    ({"cursor": "inf:run_x"}, "cursor"),
    ({"cursor": "1_000:run_x"}, "cursor"),
    ({"cursor": "1 :run_x"}, "cursor"),
    ({"cursor": "(5:run_x"}, "cursor"),
    ({"cursor": ":run_x"}, "cursor"),
    ({"cursor": "12345"}, "cursor"),
    ({"delivery": "deadd"}, "delivery"),
    ({"delivery": ""}, "delivery"),
    ({"delivery": "DEAD"}, "delivery"),
    ({"delivery": "succeeded"}, "delivery"),
    ({"delivery": "dead", "status": "completed"}, "delivery"),
]


def test_bad_run_list_query_is_400(rdb: redis.Redis, api: httpx.Client) -> None:
    def check(params: dict[str, str], field: str) -> None:
        rejected(rdb, api, "GET", "/v1/runs", status=400, field=field, params=params)

    each(LIST_CASES, check)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "x"}, "cursor"),
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": "99999999999999999999"}, "cursor"),
    ],
)
def test_bad_deliveries_query_is_400(
    rdb: redis.Redis, api: httpx.Client, sub: dict[str, Any], params: dict[str, str], field: str
) -> None:
    path = f"/v1/subscriptions/{sub['id']}/deliveries"
    rejected(rdb, api, "GET", path, status=400, field=field, params=params)


def test_good_cursor_round_trips(api: httpx.Client) -> None:
    """The relay's own cursors pass the stricter cursor check."""
    made = [
        api.post("/v1/runs", json={"provider": "citedy", "upstream_run_id": unique("pg")}).json()
        for _ in range(3)
    ]
    try:
        page = api.get("/v1/runs", params={"limit": 1})
        assert page.status_code == 200, page.text
        cursor = page.json()["next_cursor"]
        assert cursor
        second = api.get("/v1/runs", params={"limit": 1, "cursor": cursor})
        assert second.status_code == 200, second.text
        assert second.json()["data"][0]["id"] != page.json()["data"][0]["id"]
    finally:
        for run in made:
            api.delete(f"/v1/runs/{run['id']}")
