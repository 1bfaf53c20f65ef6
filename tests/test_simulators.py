"""The vendor simulators against the vendors' own contracts.

Every body the simulators answer is validated against `contracts/*.yaml`, so the relay's tests,
which run against these simulators, exercise the shapes the real vendors send, not shapes we made
up. The Citedy WarmLeadRun forbids extra properties, which is what catches a simulator that drifts.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from relay.devtools.simulators import SimConfig, create_app
from relay.devtools.simulators.state import key_id
from relay.vendors.citedy_models import CreateWarmLeadRunRequest, normalize_domain
from tests.support.servers import REPO, serve_in_thread

CITEDY_KEY = "citedy_agent_test_alpha_0001"
OTHER_CITEDY_KEY = "citedy_agent_test_beta_0002"
AP_KEY = "sk-social-test-0001"
CITEDY = "/api/agent/citedy-warm-lead"
STEP = 0.05
CITEDY_PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def _contract(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "contracts" / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


CITEDY_DOC = _contract("citedy-warm-lead.openapi.yaml")
AP_DOC = _contract("autoposting-agent-runs.openapi.yaml")
# The vendor's guides name statuses its enum omits; this copy accepts any status string.
AP_LENIENT_DOC = copy.deepcopy(AP_DOC)
del AP_LENIENT_DOC["components"]["schemas"]["AgentRun"]["properties"]["status"]["enum"]

REGISTRY: Registry[Any] = Registry().with_resources(
    (uri, Resource.from_contents(doc, default_specification=DRAFT202012))
    for uri, doc in (
        ("urn:citedy", CITEDY_DOC),
        ("urn:ap", AP_DOC),
        ("urn:ap-lenient", AP_LENIENT_DOC),
    )
)
FORMATS = FormatChecker()


def _is_datetime(value: object) -> bool:
    """RFC 3339 date-time; jsonschema skips this format unless an optional package is present."""
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return "T" in value and parsed.tzinfo is not None
    return True


FORMATS.checks("date-time", raises=ValueError)(_is_datetime)


def schema(ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref}, registry=REGISTRY, format_checker=FORMATS)


def citedy_schema(name: str) -> Draft202012Validator:
    return schema(f"urn:citedy#/components/schemas/{name}")


_AP_GET = (
    "urn:{doc}#/paths/~1agents~1{{agentId}}~1runs~1{{runId}}"
    "/get/responses/{code}/content/application~1json/schema"
)


def ap_get_schema(code: int, lenient: bool = False) -> Draft202012Validator:
    return schema(_AP_GET.format(doc="ap-lenient" if lenient else "ap", code=code))


def ap_list_schema(lenient: bool = True) -> Draft202012Validator:
    run = {"$ref": f"urn:{'ap-lenient' if lenient else 'ap'}#/components/schemas/AgentRun"}
    return Draft202012Validator(
        {
            "type": "object",
            "required": ["success", "data"],
            "properties": {
                "success": {"const": True},
                "data": {
                    "type": "object",
                    "required": ["runs", "total"],
                    "properties": {
                        "runs": {"type": "array", "items": run},
                        "total": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
        registry=REGISTRY,
        format_checker=FORMATS,
    )


def conforms(validator: Draft202012Validator, body: Any) -> Any:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, f"contract violation: {errors}\nbody: {json.dumps(body)[:2000]}"
    return body


def citedy_headers(key: str = CITEDY_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


BEARER_AP = {"authorization": f"Bearer {AP_KEY}"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(create_app(SimConfig(step_seconds=STEP))) as url:
        yield url


@pytest.fixture()
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=5.0) as http:
        assert http.post("/_sim/reset").status_code == 200
        yield http


def start(client: httpx.Client, key: str = CITEDY_KEY, **body: Any) -> httpx.Response:
    return client.post(CITEDY, json={"domain": "acme.io", **body}, headers=citedy_headers(key))


def stats(client: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/_sim/stats").json()
    return body


def set_knobs(client: httpx.Client, **knobs: Any) -> None:
    response = client.post("/_sim/config", json=knobs)
    assert response.status_code == 200, response.text


def poll_citedy(client: httpx.Client, run_id: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Every run object seen until a terminal status, each checked against the contract."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"{CITEDY}/{run_id}", headers=citedy_headers())
        assert response.status_code == 200
        run = conforms(citedy_schema("WarmLeadRunResponse"), response.json())["run"]
        seen.append(run)
        if run["status"] in ("completed", "blocked", "failed"):
            return seen
        time.sleep(STEP / 3)
    raise AssertionError(f"run never finished: {[r['status'] for r in seen]}")


def poll_agent_run(
    client: httpx.Client, agent: str, run_id: str, final: str, timeout: float = 3.0
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/autoposting/agents/{agent}/runs/{run_id}", headers=BEARER_AP)
        assert response.status_code == 200
        body = conforms(ap_get_schema(200, lenient=True), response.json())
        assert body["success"] is True
        seen.append(body["data"])
        if body["data"]["status"] == final and body["data"]["completedAt"] is not None:
            return seen
        time.sleep(STEP / 3)
    raise AssertionError(f"agent run never reached {final}: {[r['status'] for r in seen]}")


def in_order(statuses: list[str], path: list[str]) -> bool:
    positions = [path.index(s) for s in statuses]
    return positions == sorted(positions)


# --- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer sk-social-wrong-vendor"},
        {"authorization": f"Basic {CITEDY_KEY}"},
        {"authorization": "Bearer citedy_agent_"},
    ],
)
def test_citedy_refuses_missing_or_foreign_credentials(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    response = client.post(CITEDY, json={"domain": "acme.io"}, headers=headers)
    assert response.status_code == 401
    assert conforms(citedy_schema("ErrorResponse"), response.json())["error"] == "unauthorized"
    assert stats(client)["runs_created"] == 0


def test_citedy_revoked_key_gets_401(client: httpx.Client) -> None:
    assert start(client).status_code == 202
    assert client.post("/_sim/revoke", json={"api_key": CITEDY_KEY}).status_code == 200
    response = start(client)
    assert response.status_code == 401
    assert conforms(citedy_schema("ErrorResponse"), response.json())["error"] == "unauthorized"
    assert start(client, key=OTHER_CITEDY_KEY).status_code == 202


def test_autoposting_accepts_both_credential_headers(client: httpx.Client) -> None:
    run = client.post("/_sim/autoposting/agents/agent_A/runs", json={}).json()["data"]
    url = f"/autoposting/agents/agent_A/runs/{run['id']}"
    for headers in (BEARER_AP, {"x-api-key": AP_KEY}):
        response = client.get(url, headers=headers)
        assert response.status_code == 200
        assert conforms(ap_get_schema(200), response.json())["data"]["id"] == run["id"]
    for headers in (
        {},
        {"x-api-key": "not-a-social-key"},
        {"authorization": f"Bearer {CITEDY_KEY}"},
        {"authorization": f"Token {AP_KEY}"},
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 401
        body = conforms(ap_get_schema(401), response.json())
        assert body == {
            "success": False,
            "error": "unauthorized",
            "message": "Authentication required.",
        }


# --- validation --------------------------------------------------------------------------------

BAD_BODIES: list[tuple[dict[str, Any], str, bool]] = [
    # (body, field named in the message, whether the contract's JSON Schema alone rejects it)
    ({"domain": "https://acme.io/about"}, "domain", False),
    ({"domain": "acme.io/pricing"}, "domain", False),
    ({"domain": "https://acme.io/?utm=1"}, "domain", False),
    ({"domain": "https://www.linkedin.com/company/acme"}, "domain", False),
    ({"domain": "linkedin.com"}, "domain", False),
    ({"domain": "m.facebook.com"}, "domain", False),
    ({"domain": "https://x.com"}, "domain", False),
    ({"domain": "ftp://acme.io"}, "domain", False),
    ({"domain": ""}, "domain", True),
    ({"domain": "a" * 254}, "domain", True),
    ({}, "domain", True),
    ({"domain": "acme.io", "icp": "enterprise"}, "icp", True),
    ({"domain": "acme.io", "icp": None}, "icp", True),
    ({"domain": "acme.io", "buyerRoles": ["CMO"] * 7}, "buyerRoles", True),
    ({"domain": "acme.io", "buyerRoles": ["x" * 81]}, "buyerRoles[0]", True),
    ({"domain": "acme.io", "maxContacts": 0}, "maxContacts", True),
    ({"domain": "acme.io", "maxContacts": 4}, "maxContacts", True),
    ({"domain": "acme.io", "maxContacts": True}, "maxContacts", True),
    ({"domain": "acme.io", "maxContacts": 2.5}, "maxContacts", True),
    ({"domain": "acme.io", "maxContacts": "2"}, "maxContacts", True),
    ({"domain": "acme.io", "drafts": 0}, "drafts", True),
    ({"domain": "acme.io", "freshnessDays": 6}, "freshnessDays", True),
    ({"domain": "acme.io", "freshnessDays": 366}, "freshnessDays", True),
    ({"domain": "acme.io", "idempotencyKey": "short"}, "idempotencyKey", True),
    ({"domain": "acme.io", "idempotencyKey": "k" * 129}, "idempotencyKey", True),
    ({"domain": "acme.io", "unexpected": 1}, "unexpected", True),
]


@pytest.mark.parametrize(("body", "field", "schema_rejects"), BAD_BODIES)
def test_citedy_rejects_invalid_requests_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str, schema_rejects: bool
) -> None:
    request_schema = citedy_schema("CreateWarmLeadRunRequest")
    assert request_schema.is_valid(body) is not schema_rejects
    response = client.post(CITEDY, json=body, headers=citedy_headers())
    assert response.status_code == 400
    error = conforms(citedy_schema("ErrorResponse"), response.json())
    assert error["error"] == "invalid_request"
    assert error["message"].startswith(field)
    assert len(error["message"]) < 300
    assert stats(client)["runs_created"] == 0


def test_citedy_rejects_non_json_and_non_object_bodies(client: httpx.Client) -> None:
    for content in (b"{not json", b"[]", b'"acme.io"'):
        response = client.post(CITEDY, content=content, headers=citedy_headers())
        assert response.status_code == 400
        assert conforms(citedy_schema("ErrorResponse"), response.json())["error"] == (
            "invalid_request"
        )


def test_validation_messages_never_echo_the_input() -> None:
    huge = "https://acme.io/" + "p" * 10_000
    with pytest.raises(ValueError) as raised:
        normalize_domain(huge)
    assert "ppp" not in str(raised.value)
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("acme.io", "acme.io"),
        ("ACME.io.", "acme.io"),
        ("www.acme.io", "acme.io"),
        ("https://www.Acme.io/", "acme.io"),
        ("http://sub.acme.co.uk", "sub.acme.co.uk"),
    ],
)
def test_citedy_accepts_bare_domains_and_root_urls(
    client: httpx.Client, given: str, normalized: str
) -> None:
    assert (
        CreateWarmLeadRunRequest.model_validate({"domain": given}).normalized_domain == normalized
    )
    response = client.post(CITEDY, json={"domain": given}, headers=citedy_headers())
    assert response.status_code == 202
    run = conforms(citedy_schema("CreateWarmLeadRunResponse"), response.json())["run"]
    assert (run["domain"], run["normalized_domain"]) == (given, normalized)


# --- credits and idempotency -------------------------------------------------------------------


def test_new_runs_cost_40_and_replays_cost_nothing(client: httpx.Client) -> None:
    first = start(client, idempotencyKey="order-0001", maxContacts=2)
    assert first.status_code == 202
    body = conforms(citedy_schema("CreateWarmLeadRunResponse"), first.json())
    assert (body["credits_charged"], body["idempotent"]) == (40, False)
    assert body["run"]["status"] == "queued" and body["run"]["credits_charged"] == 40

    for domain in ("acme.io", "https://www.acme.io/"):  # the same company, spelled differently
        replay = start(client, domain=domain, idempotencyKey="order-0001", maxContacts=2)
        assert replay.status_code == 200
        again = conforms(citedy_schema("CreateWarmLeadRunResponse"), replay.json())
        assert (again["credits_charged"], again["idempotent"]) == (0, True)
        assert again["run"]["id"] == body["run"]["id"]

    conflict = start(client, domain="other.io", idempotencyKey="order-0001", maxContacts=2)
    assert conflict.status_code == 409
    conforms(citedy_schema("ErrorResponse"), conflict.json())
    assert start(client, idempotencyKey="order-0001", maxContacts=3).status_code == 409

    # Idempotency keys are scoped to the API key: another customer's same key is a new run.
    other = start(client, key=OTHER_CITEDY_KEY, idempotencyKey="order-0001", maxContacts=2)
    assert other.status_code == 202
    assert other.json()["run"]["id"] != body["run"]["id"]
    assert start(client).status_code == 202  # no key, always a new run

    counted = stats(client)
    assert counted["charges"] == {key_id(CITEDY_KEY): 2, key_id(OTHER_CITEDY_KEY): 1}
    assert counted["credits_charged_total"] == 120
    assert counted["charged_runs"] == counted["runs_created"] == 3


def test_out_of_credits_answers_402_but_replays_still_work(client: httpx.Client) -> None:
    assert client.post("/_sim/credits", json={"api_key": CITEDY_KEY, "balance": 79}).is_success
    assert start(client, idempotencyKey="order-0002").status_code == 202
    refused = start(client, domain="beta.io")
    assert refused.status_code == 402
    body = conforms(citedy_schema("PaymentRequiredResponse"), refused.json())
    assert body["credits_required"] == 40
    assert body["breakdown"] and body["error"] and body["message"]
    assert set(body["topup"]) >= {
        "recommended_package_credits",
        "recommended_package_price_usd",
        "topup_url",
    }
    assert start(client, idempotencyKey="order-0002").status_code == 200
    assert start(client, key=OTHER_CITEDY_KEY).status_code == 202  # default balance elsewhere
    assert stats(client)["charged_runs"] == 2


# --- progression -------------------------------------------------------------------------------


def test_citedy_run_progresses_to_a_complete_result(client: httpx.Client) -> None:
    created = start(client, maxContacts=2, drafts=1, buyerRoles=["CMO"], icp="vertical-saas")
    run_id = created.json()["run"]["id"]
    seen = poll_citedy(client, run_id)
    statuses = [run["status"] for run in seen]
    assert in_order(statuses, CITEDY_PATH) and statuses[-1] == "completed"
    assert all(run["result"] is None and run["completed_at"] is None for run in seen[:-1])
    final = seen[-1]
    assert final["completed_at"] is not None
    result = final["result"]
    assert result["runId"] == run_id and result["status"] == "completed"
    assert len(result["contacts"]) == 2 and len(result["drafts"]) == 1
    assert {c["role"] for c in result["contacts"]} == {"CMO"}
    assert result["account"]["domain"] == "acme.io"
    assert result["exportRows"]
    assert set(result["exportUrls"]) == {"csv", "xlsx"}
    assert stats(client)["gets_per_run"][run_id] == len(seen)


@pytest.mark.parametrize(
    ("domain", "ending", "reason_field"),
    [
        ("blocked-corp.com", "blocked", "blocked_reason"),
        ("will-fail.io", "failed", "error_message"),
    ],
)
def test_citedy_domains_choose_blocked_or_failed(
    client: httpx.Client, domain: str, ending: str, reason_field: str
) -> None:
    run_id = start(client, domain=domain).json()["run"]["id"]
    final = poll_citedy(client, run_id)[-1]
    assert final["status"] == ending
    assert isinstance(final[reason_field], str) and final[reason_field]
    assert final["result"] is None and final["completed_at"] is not None


def test_citedy_get_errors_and_vanishing(client: httpx.Client) -> None:
    bad = client.get(f"{CITEDY}/not-a-uuid", headers=citedy_headers())
    assert bad.status_code == 400
    conforms(citedy_schema("ErrorResponse"), bad.json())
    unknown = client.get(f"{CITEDY}/{uuid.uuid4()}", headers=citedy_headers())
    assert unknown.status_code == 404
    conforms(citedy_schema("ErrorResponse"), unknown.json())

    run_id = start(client).json()["run"]["id"]
    foreign = client.get(f"{CITEDY}/{run_id}", headers=citedy_headers(OTHER_CITEDY_KEY))
    assert foreign.status_code == 404
    assert client.get(f"{CITEDY}/{run_id}", headers=citedy_headers()).status_code == 200
    assert client.delete(f"/_sim/runs/{run_id}").status_code == 200
    assert client.get(f"{CITEDY}/{run_id}", headers=citedy_headers()).status_code == 404
    assert client.delete(f"/_sim/runs/{run_id}").status_code == 404


# --- faults ------------------------------------------------------------------------------------


def test_error_rate_answers_500_without_side_effects(client: httpx.Client) -> None:
    set_knobs(client, error_rate=1.0)
    response = start(client)
    assert response.status_code == 500
    conforms(citedy_schema("ErrorResponse"), response.json())
    listing = client.get("/autoposting/agents/agent_A/runs", headers=BEARER_AP)
    assert listing.status_code == 500 and listing.json()["success"] is False
    counted = stats(client)
    assert counted["status_500"] == 2 and counted["charged_runs"] == 0


def test_fault_after_effect_is_recovered_by_an_idempotent_retry(client: httpx.Client) -> None:
    set_knobs(client, error_rate=1.0, fault_phase="after")
    assert start(client, idempotencyKey="retry-me-01").status_code == 500
    set_knobs(client, error_rate=0.0)
    replay = start(client, idempotencyKey="retry-me-01")
    assert replay.status_code == 200 and replay.json()["idempotent"] is True
    assert stats(client)["charged_runs"] == 1


def test_rate_limit_rate_answers_429_with_retry_after(client: httpx.Client) -> None:
    set_knobs(client, rate_limit_rate=1.0, retry_after=3)
    response = start(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    body = conforms(citedy_schema("RateLimitErrorResponse"), response.json())
    assert body["error"] == "rate_limited" and body["retry_after"] == 3
    ap = client.get("/autoposting/agents/agent_A/runs", headers=BEARER_AP)
    assert ap.status_code == 429 and ap.json()["retry_after"] == 3
    assert stats(client)["status_429"] == 2


def test_malformed_rate_answers_200_with_a_broken_body(client: httpx.Client) -> None:
    set_knobs(client, malformed_rate=1.0)
    response = start(client)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_latency_knob_delays_vendor_calls(client: httpx.Client) -> None:
    set_knobs(client, latency_ms=150)
    began = time.monotonic()
    assert start(client).status_code == 202
    assert time.monotonic() - began >= 0.15


def test_rate_limit_per_second_is_a_real_per_key_limit(client: httpx.Client) -> None:
    set_knobs(client, rate_limit_per_second=5)
    url = "/autoposting/agents/agent_A/runs"
    began = time.monotonic()
    responses = [client.get(url, headers=BEARER_AP) for _ in range(15)]
    elapsed = time.monotonic() - began
    codes = [r.status_code for r in responses]
    # A burst of 5, then 5 more per second: anything beyond that must have been refused.
    assert codes[:5] == [200] * 5
    assert codes.count(200) <= 5 + int(elapsed * 5) + 1
    assert set(codes) == {200, 429}
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert conforms(citedy_schema("RateLimitErrorResponse"), limited.json())["retry_after"] >= 1
    other = client.get(url, headers={"x-api-key": "sk-social-2nd"})
    assert other.status_code == 200  # a separate bucket per API key
    counted = stats(client)
    assert counted["status_429"] == codes.count(429)
    assert counted["max_requests_per_second"] >= (15 if elapsed < 0.9 else 5)
    time.sleep(0.3)
    assert client.get(url, headers=BEARER_AP).status_code == 200


def test_config_knobs_are_validated_and_reset_restores_construction_config(
    client: httpx.Client,
) -> None:
    for bad in ({"error_rate": 2}, {"step_seconds": -1}, {"nope": 1}, {"retry_after": True}):
        response = client.post("/_sim/config", json=bad)
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    set_knobs(client, step_seconds=9, seed=7)
    assert client.get("/_sim/config").json()["step_seconds"] == 9
    client.post("/_sim/reset")
    assert client.get("/_sim/config").json()["step_seconds"] == STEP


# --- stats -------------------------------------------------------------------------------------


def test_stats_count_requests_without_exposing_keys(client: httpx.Client) -> None:
    run_id = start(client).json()["run"]["id"]
    for _ in range(3):
        client.get(f"{CITEDY}/{run_id}", headers=citedy_headers())
    client.post(CITEDY, json={"domain": "acme.io"})  # unauthenticated still counts
    client.get("/autoposting/agents/agent_A/runs", headers=BEARER_AP)
    response = client.get("/_sim/stats")
    counted = response.json()
    assert set(counted) == {
        "requests",
        "requests_total",
        "charges",
        "credits_charged_total",
        "charged_runs",
        "runs_created",
        "status_429",
        "status_500",
        "status_401",
        "unauthorized_forced",
        "malformed",
        "max_requests_per_second",
        "max_per_second_by_key",
        "gets_per_run",
    }
    assert counted["requests"] == {
        "citedy.create_run": 2,
        "citedy.get_run": 3,
        "autoposting.list_runs": 1,
    }
    assert counted["requests_total"] == 6
    assert counted["gets_per_run"] == {run_id: 3}
    assert counted["max_requests_per_second"] == 4
    by_key = counted["max_per_second_by_key"]
    assert by_key[key_id(CITEDY_KEY)] == 4 and by_key[key_id(AP_KEY)] == 1
    assert counted["malformed"] == 0
    assert CITEDY_KEY not in response.text and AP_KEY not in response.text


# --- Autoposting runs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "error", "enum_ok"),
    [
        (None, None, True),
        (["pending", "running", "succeeded"], None, False),
        (["queued", "running", "partial"], None, False),
        (["queued", "running", "failed"], "Daily post quota exceeded.", True),
    ],
)
def test_autoposting_runs_follow_their_status_path(
    client: httpx.Client, statuses: list[str] | None, error: str | None, enum_ok: bool
) -> None:
    created = client.post(
        "/_sim/autoposting/agents/agent_P/runs", json={"statuses": statuses, "error": error}
    )
    assert created.status_code == 201
    run = created.json()["data"]
    path = statuses or ["queued", "running", "completed"]
    assert run["status"] == path[0] and run["completedAt"] is None
    seen = poll_agent_run(client, "agent_P", run["id"], path[-1])
    assert in_order([r["status"] for r in seen], path)
    final = seen[-1]
    assert ap_get_schema(200).is_valid({"success": True, "data": final}) is enum_ok
    if path[-1] == "failed":
        assert final["error"] == error and final["postsGenerated"] == 0
    else:
        assert final["error"] is None and final["postsGenerated"] >= 1


def test_autoposting_unknown_or_vanished_run_is_404(client: httpx.Client) -> None:
    run = client.post("/_sim/autoposting/agents/agent_A/runs", json={}).json()["data"]
    for path in (
        "/autoposting/agents/agent_A/runs/run_UNKNOWN",
        f"/autoposting/agents/agent_B/runs/{run['id']}",
    ):
        response = client.get(path, headers=BEARER_AP)
        assert response.status_code == 404
        body = response.json()
        assert body["success"] is False and body["error"] == "not_found"
    assert client.delete(f"/_sim/runs/{run['id']}").status_code == 200
    gone = client.get(f"/autoposting/agents/agent_A/runs/{run['id']}", headers=BEARER_AP)
    assert gone.status_code == 404


def test_autoposting_runs_list_is_newest_first_and_per_agent(client: httpx.Client) -> None:
    ids = []
    for _ in range(3):
        ids.append(
            client.post("/_sim/autoposting/agents/agent_L/runs", json={}).json()["data"]["id"]
        )
    client.post("/_sim/autoposting/agents/agent_M/runs", json={})
    response = client.get("/autoposting/agents/agent_L/runs", headers=BEARER_AP)
    body = conforms(ap_list_schema(), response.json())
    assert body["data"]["total"] == 3
    assert [run["id"] for run in body["data"]["runs"]] == ids[::-1]
    paged = client.get("/autoposting/agents/agent_L/runs?limit=2", headers=BEARER_AP).json()
    assert len(paged["data"]["runs"]) == 2 and paged["data"]["total"] == 3
    empty = client.get("/autoposting/agents/nobody/runs", headers={"x-api-key": AP_KEY}).json()
    assert empty == {"success": True, "data": {"runs": [], "total": 0}}


def test_scheduled_agent_starts_runs_by_itself(client: httpx.Client) -> None:
    scheduled = client.post(
        "/_sim/autoposting/agents/agent_S/schedule", json={"every_seconds": 0.1}
    )
    assert scheduled.status_code == 200
    time.sleep(0.35)
    body = conforms(
        ap_list_schema(lenient=False),
        client.get("/autoposting/agents/agent_S/runs", headers=BEARER_AP).json(),
    )
    total = body["data"]["total"]
    assert total >= 3
    started = [run["startedAt"] for run in body["data"]["runs"]]
    assert started == sorted(started, reverse=True)
    assert body["data"]["runs"][-1]["status"] != "queued"  # the oldest has moved on
    client.post("/_sim/autoposting/agents/agent_S/schedule", json={"every_seconds": None})
    stopped_at = client.get("/autoposting/agents/agent_S/runs", headers=BEARER_AP).json()
    time.sleep(0.25)
    later = client.get("/autoposting/agents/agent_S/runs", headers=BEARER_AP).json()
    assert later["data"]["total"] == stopped_at["data"]["total"]
    bad = client.post("/_sim/autoposting/agents/agent_S/schedule", json={"every_seconds": 0})
    assert bad.status_code == 400


def test_citedy_phases_can_last_unalike(client: httpx.Client) -> None:
    """`citedy_phase_seconds` sets each phase's own length: the bench measures the learned poll
    schedule against uneven phases, and `updated_at` must still say when the status changed."""
    bad = client.post("/_sim/config", json={"citedy_phase_seconds": {"completed": 1}})
    assert bad.status_code == 400
    bad = client.post("/_sim/config", json={"citedy_phase_seconds": {"queued": -1}})
    assert bad.status_code == 400
    set_knobs(client, step_seconds=0.4, citedy_phase_seconds={"queued": 0.1, "signals_running": 1})
    run = start(client).json()["run"]
    created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00")).timestamp()
    seen: dict[str, float] = {}
    while "completed" not in seen:
        now = client.get(f"{CITEDY}/{run['id']}", headers=citedy_headers()).json()["run"]
        assert conforms(citedy_schema("WarmLeadRun"), now)
        changed = datetime.fromisoformat(now["updated_at"].replace("Z", "+00:00")).timestamp()
        seen.setdefault(now["status"], changed - created)
        time.sleep(0.05)
    assert seen["queued"] == pytest.approx(0.0, abs=0.002)
    assert seen["signals_running"] == pytest.approx(0.1, abs=0.002)
    assert seen["contacts_running"] == pytest.approx(1.1, abs=0.002)
    assert seen["drafting_running"] == pytest.approx(1.5, abs=0.002)
    assert seen["completed"] == pytest.approx(1.9, abs=0.002)
