"""The published event schemas: `/openapi.json` `webhooks`, generated from the models every body
is built through, with `data.upstream` typed per vendor from contracts/ and open to what the
vendors add. Every body the suite's receiver gets is validated against them (the receiver does
it); here: the document's shape, that drift in either direction fails, and real deliveries of
every event type validating against the served document."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from relay.api.app import openapi_document
from relay.config import Settings
from relay.delivery import events, webhook_schemas
from relay.vendors.registry import build_providers
from tests.conftest import ARTIFACTS
from tests.support.receiver import Receiver
from tests.support.stack import CITEDY_KEY, Stack, subscribe, unique, wait_for


def _run(provider: str = "citedy", **extra: str) -> dict[str, str]:
    return {"id": "run_x", "provider": provider, "metadata": '{"crm_id": 7}', **extra}


def _status_body(provider: str, upstream: dict[str, Any]) -> dict[str, Any]:
    extra = {"agent_id": "agent_1"} if provider == "autoposting" else {}
    part = events.run_part(
        _run(provider, upstream_run_id="u1", **extra),
        status=upstream["status"],
        previous=None,
        terminal=False,
        sequence=1,
    )
    body: dict[str, Any] = json.loads(
        events.body(events.STATUS_CHANGED, 1.7e9, {"run": part, "upstream": upstream})
    )
    return body


CITEDY_RUN = {
    "id": "3f1c9a52-9a8e-4c1e-9d43-2a8f4f0e6c11",
    "status": "queued",
    "domain": "acme.example",
    "normalized_domain": "acme.example",
    "credits_charged": 40,
    "created_at": "2026-11-22T10:00:00Z",
    "updated_at": "2026-11-22T10:00:00Z",
}
AGENT_RUN = {"id": "r1", "agentId": "agent_1", "status": "queued", "postsGenerated": 0}


def _errors(doc: dict[str, Any], body: dict[str, Any]) -> list[str]:
    return [e.message for e in webhook_schemas.body_validator(doc).iter_errors(body)]


def test_generated_upstream_schemas_match_the_contracts() -> None:
    """relay/upstream_schemas.json is what contracts/ gives today (`python -m
    relay.delivery.webhook_schemas` rewrites it after a contract changes)."""
    assert webhook_schemas.upstream() == webhook_schemas.from_contracts()


def test_every_provider_has_a_contract_schema() -> None:
    assert set(build_providers(Settings())) == set(webhook_schemas.PROVIDER_CONTRACTS)


def test_document_is_openapi_3_1_with_one_webhook_per_event_type() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1.")
    assert list(doc["webhooks"]) == list(events.EVENT_TYPES)
    schemas = doc["components"]["schemas"]
    for event_type, model in events.MODELS.items():
        op = doc["webhooks"][event_type]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}"
        assert {p["name"] for p in op["parameters"]} == {
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
    # data.upstream per provider, told apart by data.run.provider
    variants = schemas["StatusChangedData"]["oneOf"]
    assert len(variants) == len(webhook_schemas.PROVIDER_CONTRACTS)


@pytest.mark.parametrize(
    ("provider", "upstream"), [("citedy", CITEDY_RUN), ("autoposting", AGENT_RUN)]
)
def test_upstream_is_typed_per_provider_and_open_to_vendor_additions(
    provider: str, upstream: dict[str, Any]
) -> None:
    doc = openapi_document()
    assert _errors(doc, _status_body(provider, upstream)) == []
    # A status the contract's enum does not list, and a field it does not name: still valid.
    newer = {**upstream, "status": "partial", "added_by_vendor_later": {"x": 1}}
    assert _errors(doc, _status_body(provider, newer)) == []
    # A field of the wrong type is caught: the typing is real.
    wrong = {**upstream, "id": 12345}
    assert _errors(doc, _status_body(provider, wrong)) != []
    # ... and the variant follows run.provider: the other vendor's object does not pass.
    other = AGENT_RUN if provider == "citedy" else CITEDY_RUN
    swapped = _status_body(provider, upstream)
    swapped["data"]["upstream"] = {**other, "id": 5}
    assert _errors(doc, swapped) != []


def test_a_body_change_that_disagrees_with_the_schema_fails() -> None:
    doc = openapi_document()
    body = _status_body("citedy", CITEDY_RUN)
    # a field the schema does not have, in the relay's own part
    added = copy.deepcopy(body)
    added["data"]["run"]["priority"] = 1
    assert _errors(doc, added) != []
    # a field the schema requires, gone
    missing = copy.deepcopy(body)
    del missing["data"]["run"]["sequence"]
    assert _errors(doc, missing) != []
    # and the builder itself refuses such bodies: bodies are built through the models
    part = events.run_part(_run(), status="queued", previous=None, terminal=False, sequence=1)
    with pytest.raises(pydantic.ValidationError):
        events.body(
            events.STATUS_CHANGED, 1.7e9, {"run": {**part, "priority": 1}, "upstream": CITEDY_RUN}
        )
    with pytest.raises(pydantic.ValidationError):
        events.body(events.TRACKING_FAILED, 1.7e9, {"run": part, "error": {"message": "m"}})


def test_a_status_body_is_the_json_the_model_itself_writes() -> None:
    """events.body writes a status change with orjson after a strict validation: the very text
    the model's own writer gives, for a plain run, an agent's run, and a vendor snapshot holding
    unicode, escapes, floats, big numbers and nesting."""
    upstream = {
        **CITEDY_RUN,
        "note": "é✓ \u2028 \"quoted\" \n\t\u0000 𝄞",
        "floats": [0.1, 1e20, 1e-7, -0.0, 1764942000.123456, 3.0],
        "ints": [0, -5, 2**63 - 1],
        "nested": {"a": [{"b": None, "c": True}], "": {}},
    }
    for run in (_run(), _run("autoposting", agent_id="agt_1", upstream_run_id="ap_1")):
        part = events.run_part(run, status="done", previous="queued", terminal=True, sequence=3)
        data = {"run": part, "upstream": upstream}
        envelope = {"type": events.STATUS_CHANGED, "timestamp": events.iso(1.7e9), "data": data}
        model = events.MODELS[events.STATUS_CHANGED].model_validate(envelope)
        assert events.body(events.STATUS_CHANGED, 1.7e9, data) == model.model_dump_json()
    # past orjson's integers: the model's writer, the same text as before
    big = {"run": part, "upstream": {**upstream, "ints": [2**70]}}
    assert json.loads(events.body(events.STATUS_CHANGED, 1.7e9, big))["data"]["upstream"][
        "ints"
    ] == [2**70]
    # strict: a value of the wrong type is refused, not coerced
    wrong = {"run": {**part, "sequence": "3"}, "upstream": {}}
    with pytest.raises(pydantic.ValidationError):
        events.body(events.STATUS_CHANGED, 1.7e9, wrong)


def test_a_schema_change_that_disagrees_with_the_bodies_fails() -> None:
    body = _status_body("citedy", CITEDY_RUN)
    doc = openapi_document()
    assert _errors(doc, body) == []
    renamed = copy.deepcopy(doc)
    run_part = renamed["components"]["schemas"]["RunPart"]
    run_part["properties"]["seq"] = run_part["properties"].pop("sequence")
    run_part["required"] = ["seq" if r == "sequence" else r for r in run_part["required"]]
    assert _errors(renamed, body) != []
    retyped = copy.deepcopy(doc)
    retyped["components"]["schemas"]["RunPart"]["properties"]["terminal"] = {"type": "string"}
    assert _errors(retyped, body) != []


def test_every_event_type_builds_a_valid_body() -> None:
    doc = openapi_document()
    part = events.run_part(_run(), status=None, previous=None, terminal=True, sequence=1)
    bodies = [
        events.body(
            events.START_FAILED,
            1.7e9,
            {
                "run": part,
                "error": {
                    "status_code": 402,
                    "error": "insufficient_credits",
                    "message": "top up",
                    "credits_required": 40,
                    "topup": {
                        "recommended_package_credits": 500,
                        "recommended_package_price_usd": 10,
                        "topup_url": "https://example.com/billing",
                    },
                },
            },
        ),
        events.body(
            events.TRACKING_FAILED,
            1.7e9,
            {"run": part, "error": {"error": "not_found", "message": "gone"}},
        ),
        events.ping_body("sub_1", 1.7e9),
    ]
    for text in bodies:
        assert _errors(doc, json.loads(text)) == []


def test_served_document_is_the_generated_one(stack: Stack) -> None:
    served = httpx.get(stack.api_url + "/openapi.json", timeout=10).json()
    assert served["webhooks"] == openapi_document()["webhooks"]
    assert served["components"] == openapi_document()["components"]


def test_delivered_bodies_of_every_type_validate_against_the_served_schema(
    stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    """Real deliveries: a Citedy run to `completed`, an Autoposting run, a 402 start failure, a
    tracking failure and a ping, each validated against the document `/openapi.json` serves.
    One delivered body is kept in test-artifacts/ for the record."""
    served = httpx.get(stack.api_url + "/openapi.json", timeout=10).json()
    hook = unique("schema")
    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        done = api.post(
            "/v1/runs",
            json={"provider": "citedy", "input": {"domain": f"{unique('s')}.example"}},
        ).json()
        agent = unique("agent")
        created = sim.post(
            f"/_sim/autoposting/agents/{agent}/runs",
            json={"statuses": ["pending", "running", "succeeded"]},
        ).json()["data"]
        api.post(
            "/v1/runs",
            json={"provider": "autoposting", "agent_id": agent, "upstream_run_id": created["id"]},
        ).raise_for_status()
        assert api.post(f"/v1/subscriptions/{sub['id']}/test").status_code == 202
        wait_for(
            lambda: api.get(f"/v1/runs/{done['id']}").json()["state"] == "completed",
            timeout=30,
            what="citedy run completed",
        )
        sim.post("/_sim/credits", json={"api_key": CITEDY_KEY, "balance": 0}).raise_for_status()
        api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": "broke.example"}}
        ).raise_for_status()
        ghost = api.post(
            "/v1/runs", json={"provider": "citedy", "upstream_run_id": str(uuid.uuid4())}
        ).json()

        def types() -> set[str]:
            return {e["type"] for e in receiver.events(hook)}

        wait_for(lambda: types() >= set(events.RUN_TYPES), timeout=30, what="every run type")
        wait_for(
            lambda: api.get(f"/v1/runs/{ghost['id']}").json()["state"] == "tracking_failed",
            what="tracking failed",
        )
    hits = receiver.got(hook)
    for hit in hits:
        assert _errors(served, hit.json) == [], hit.body[:300]
    completed = [
        h.json
        for h in hits
        if h.json["type"] == events.STATUS_CHANGED
        and h.json["data"]["run"]["status"] == "completed"
    ]
    assert completed and completed[0]["data"]["upstream"]["result"]["runId"]
    out = Path(ARTIFACTS) / "webhook-schemas"
    out.mkdir(parents=True, exist_ok=True)
    (out / "delivered-completed.json").write_text(json.dumps(completed[0], indent=1))
