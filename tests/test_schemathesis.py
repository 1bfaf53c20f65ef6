"""Schemathesis against the live `/openapi.json` of the real stack, as tenant t1: no operation
answers 5xx for anything generated from (or against) the spec, every 4xx has the relay's error
shape, responses conform to what the spec documents (status codes, content types, bodies), and
the spec's constraints are the handlers' constraints: schema-invalid input gets a 4xx, and
schema-valid input is not refused (except where noted in NO_POSITIVE_ACCEPTANCE).

Bounded: a few examples per operation, no stateful phase. Generated URL fields are replaced by a
loopback URL before sending, so the relay's SSRF guard never resolves a generated host name.
`POST /v1/callback-secret` is left out: it reveals or rotates t1's callback secret, a one-time
action other tests depend on (its answers are checked in tests/test_isolation.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from relay.api.app import TABLE
from tests.support.stack import TENANT_KEYS, Stack

SAFE_URL = "http://127.0.0.1:9/schemathesis"
EXAMPLES = 25
AUTH = {"Authorization": f"Bearer {TENANT_KEYS['t1']}"}


def error_shape(ctx: CheckContext, response: schemathesis.Response, case: Case) -> bool | None:
    """Every 4xx is JSON `{"error": str, "message": str}` plus an optional string `field`."""
    if not 400 <= response.status_code < 500:
        return None
    problem = f"{response.status_code} without the relay's error shape: {response.text[:300]!r}"
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(problem) from None
    assert isinstance(body, dict), problem
    assert isinstance(body.get("error"), str) and body["error"], problem
    assert isinstance(body.get("message"), str) and body["message"], problem
    assert set(body) <= {"error", "message", "field"}, problem
    assert isinstance(body.get("field", ""), str), problem
    return None


CHECKS = [
    not_a_server_error,
    error_shape,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # what the spec calls invalid gets a 4xx
    positive_data_acceptance,  # and what it calls valid is not refused with a 400
]
#: POST /v1/runs has cross-field rules (input xor upstream_run_id, agent_id per provider) and
#: Citedy's input rules (no path in the domain, no social hosts...) that the spec describes in
#: words, not in JSON Schema, so schema-valid bodies are often, rightly, refused there.
NO_POSITIVE_ACCEPTANCE = {("POST", "/v1/runs")}


def _loopback_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: SAFE_URL
            if k in ("url", "callback_url") and isinstance(v, str)
            else _loopback_urls(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_loopback_urls(v) for v in value]
    return value


def _short_wait(query: dict[str, Any]) -> None:
    """A valid `wait` (a long-poll of up to 30 s) would outlast the request timeout: it becomes
    at most 0.1 s, still valid. Invalid ones are left for the negative checks."""
    wait = query.get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 <= wait <= 30:
        query["wait"] = min(wait, 0.1)


def _one_runs_filter(query: dict[str, Any]) -> None:
    """`delivery` with `status` is a 400 the spec says in words only (a parameter cannot name
    another): the generated pair keeps `delivery`."""
    if "delivery" in query:
        query.pop("status", None)


def _undo(api: httpx.Client, method: str, path: str, response: Any) -> None:
    """Remove what an accepted request created (subscriptions count against a tenant limit)."""
    if method != "POST" or response.status_code not in (201, 202):
        return
    try:
        created = response.json()
    except ValueError:
        return
    kind = {"/v1/runs": "runs", "/v1/subscriptions": "subscriptions", "/v1/watches": "watches"}
    if path in kind and isinstance(created, dict) and created.get("id"):
        api.delete(f"/v1/{kind[path]}/{created['id']}")


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> Any:
    loaded = schemathesis.openapi.from_url(stack.api_url + "/openapi.json", timeout=10)
    loaded.config.update(base_url=stack.api_url, headers=AUTH, request_timeout=10)
    return loaded


#: Every operation of the route table but the callback secret's (see the module docstring),
#: the connection PUT (a generated key would become t1's vendor key for the other tests on this
#: stack) and the admin routes (off on this stack); tests/test_tenants.py covers those.
OPERATIONS = [
    (op.method, op.path)
    for op, _ in TABLE
    if op.path != "/v1/callback-secret"
    and not op.admin
    and (op.method, op.path) != ("PUT", "/v1/connections/{provider}")
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_conforms_to_its_openapi(api_schema: Any, stack: Stack, method: str, path: str) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    checks = [
        c
        for c in CHECKS
        if not (c is positive_data_acceptance and (method, path) in NO_POSITIVE_ACCEPTANCE)
    ]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Case) -> None:
        if isinstance(case.body, dict | list):
            case.body = _loopback_urls(case.body)
        if path == "/v1/events" and isinstance(case.query, dict):
            _short_wait(case.query)
        if (method, path) == ("GET", "/v1/runs") and isinstance(case.query, dict):
            _one_runs_filter(case.query)
        response = case.call(headers=AUTH)
        try:
            case.validate_response(response, checks=checks, headers=AUTH)
        finally:
            _undo(api, method, path, response)

    with stack.client("t1") as api:
        run()


def test_spec_is_served_and_complete(stack: Stack) -> None:
    """Every route of the table is in the served document, with the error shape for its 4xx."""
    doc = httpx.get(stack.api_url + "/openapi.json", timeout=10).json()
    for op, _ in TABLE:
        entry = doc["paths"][op.path][op.method.lower()]
        assert "400" in entry["responses"], (op.method, op.path)
        ref = entry["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Error"
        if op.body is not None:
            assert {"413", "415"} <= set(entry["responses"]), (op.method, op.path)
    # An Idempotency-Key replay answers 200 and a conflicting one 409, beside the 202.
    assert {"200", "202", "409"} <= set(doc["paths"]["/v1/runs"]["post"]["responses"])
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "message"]


def test_spec_provider_enum_matches_the_registry() -> None:
    from relay.api.schemas import RunCreate
    from relay.config import Settings
    from relay.vendors.registry import build_providers

    documented = RunCreate.model_json_schema()["properties"]["provider"]["enum"]
    assert sorted(documented) == sorted(build_providers(Settings()))
