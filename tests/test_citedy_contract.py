"""The Citedy simulator's request validation against a table written from the vendor's contract
text alone (contracts/citedy-warm-lead.openapi.yaml), not from either implementation.

Each row is read off the contract: the JSON Schema of CreateWarmLeadRunRequest (types, bounds,
enum, required, no extra properties) and the prose of `domain` ("One company domain. Bare domains
and http(s) URLs are accepted, but paths/social profile URLs are rejected."). The simulator must
agree with every row, over HTTP; and where the relay's own model accepts a body, the simulator
must too (otherwise an accepted run would fail at the vendor minutes later)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from relay.devtools.simulators import citedy_contract
from relay.vendors.citedy_models import CreateWarmLeadRunRequest

CONTRACT = Path(__file__).resolve().parents[1] / "contracts" / "citedy-warm-lead.openapi.yaml"
PATH = "/api/agent/citedy-warm-lead"
HEADERS = {"authorization": "Bearer citedy_agent_contract_table_01"}


def _contract_schema() -> dict[str, Any]:
    doc = yaml.safe_load(CONTRACT.read_text())
    schema: dict[str, Any] = doc["components"]["schemas"]["CreateWarmLeadRunRequest"]
    return schema


def test_the_simulators_schema_is_the_contracts() -> None:
    assert citedy_contract.REQUEST_SCHEMA == _contract_schema()


def test_the_simulators_defaults_are_the_ones_the_contract_states() -> None:
    props = _contract_schema()["properties"]
    for name in ("icp", "maxContacts", "drafts", "freshnessDays"):
        assert (
            f"Defaults to {citedy_contract.DEFAULTS[name]} when omitted"
            in props[name]["description"]
        ), name


D = "acme.io"

#: (body, accepted, what): `what` is the normalized domain for an accepted body, or the field
#: the 400 must name for a refused one.
TABLE: list[tuple[Any, bool, str]] = [
    # domain: bare domains and http(s) URLs of the site
    ({"domain": "acme.io"}, True, "acme.io"),
    ({"domain": "sub.acme.co.uk"}, True, "sub.acme.co.uk"),
    ({"domain": "ACME.IO"}, True, "acme.io"),
    ({"domain": "www.acme.io"}, True, "acme.io"),
    ({"domain": "acme.io."}, True, "acme.io"),
    ({"domain": "https://acme.io"}, True, "acme.io"),
    ({"domain": "http://acme.io/"}, True, "acme.io"),
    ({"domain": "HTTPS://www.Acme.io/"}, True, "acme.io"),
    ({"domain": "https://acme.io:8443/"}, True, "acme.io"),
    ({"domain": "my-company.io"}, True, "my-company.io"),
    ({"domain": "bücher.de"}, True, "xn--bcher-kva.de"),
    # domain: paths, social profiles, other schemes, things that are no domain
    ({"domain": "https://acme.io/about"}, False, "domain"),
    ({"domain": "acme.io/pricing"}, False, "domain"),
    ({"domain": "https://acme.io/?utm=1"}, False, "domain"),
    ({"domain": "https://acme.io/#team"}, False, "domain"),
    ({"domain": "https://www.linkedin.com/company/acme"}, False, "domain"),
    ({"domain": "linkedin.com"}, False, "domain"),
    ({"domain": "https://twitter.com/acme"}, False, "domain"),
    ({"domain": "https://x.com"}, False, "domain"),
    ({"domain": "m.facebook.com"}, False, "domain"),
    ({"domain": "instagram.com"}, False, "domain"),
    ({"domain": "ftp://acme.io"}, False, "domain"),
    ({"domain": "mailto:someone@acme.io"}, False, "domain"),
    ({"domain": "https://user:pw@acme.io/"}, False, "domain"),
    ({"domain": "acme"}, False, "domain"),
    ({"domain": "acme io"}, False, "domain"),
    ({"domain": "-acme.io"}, False, "domain"),
    ({"domain": "acme_co.io"}, False, "domain"),
    ({"domain": "93.184.216.34"}, False, "domain"),
    ({"domain": "https://acme.io:port/"}, False, "domain"),
    # domain: the schema's type and length
    ({"domain": ""}, False, "domain"),
    ({"domain": "a" * 250 + ".io"}, False, "domain"),
    ({"domain": 42}, False, "domain"),
    ({"domain": None}, False, "domain"),
    ({}, False, "domain"),
    # icp: the enum, no null
    ({"domain": D, "icp": "seo-geo-agency"}, True, D),
    ({"domain": D, "icp": "content-led-saas"}, True, D),
    ({"domain": D, "icp": "vertical-saas"}, True, D),
    ({"domain": D, "icp": "enterprise"}, False, "icp"),
    ({"domain": D, "icp": "Vertical-SaaS"}, False, "icp"),
    ({"domain": D, "icp": None}, False, "icp"),
    # buyerRoles: up to 6 strings of 1-80 characters
    ({"domain": D, "buyerRoles": []}, True, D),
    ({"domain": D, "buyerRoles": ["CMO"] * 6}, True, D),
    ({"domain": D, "buyerRoles": ["x" * 80]}, True, D),
    ({"domain": D, "buyerRoles": ["CMO"] * 7}, False, "buyerRoles"),
    ({"domain": D, "buyerRoles": ["x" * 81]}, False, "buyerRoles[0]"),
    ({"domain": D, "buyerRoles": ["CMO", ""]}, False, "buyerRoles[1]"),
    ({"domain": D, "buyerRoles": [1]}, False, "buyerRoles[0]"),
    ({"domain": D, "buyerRoles": "CMO"}, False, "buyerRoles"),
    # the integer fields and their bounds
    ({"domain": D, "maxContacts": 1}, True, D),
    ({"domain": D, "maxContacts": 3}, True, D),
    ({"domain": D, "maxContacts": 0}, False, "maxContacts"),
    ({"domain": D, "maxContacts": 4}, False, "maxContacts"),
    ({"domain": D, "maxContacts": 2.5}, False, "maxContacts"),
    ({"domain": D, "maxContacts": "2"}, False, "maxContacts"),
    ({"domain": D, "maxContacts": True}, False, "maxContacts"),
    ({"domain": D, "drafts": 1}, True, D),
    ({"domain": D, "drafts": 0}, False, "drafts"),
    ({"domain": D, "drafts": 4}, False, "drafts"),
    ({"domain": D, "freshnessDays": 7}, True, D),
    ({"domain": D, "freshnessDays": 365}, True, D),
    ({"domain": D, "freshnessDays": 6}, False, "freshnessDays"),
    ({"domain": D, "freshnessDays": 366}, False, "freshnessDays"),
    # idempotencyKey: 8-128 characters
    ({"domain": D, "idempotencyKey": "k" * 8}, True, D),
    ({"domain": D, "idempotencyKey": "k" * 128}, True, D),
    ({"domain": D, "idempotencyKey": "k" * 7}, False, "idempotencyKey"),
    ({"domain": D, "idempotencyKey": "k" * 129}, False, "idempotencyKey"),
    ({"domain": D, "idempotencyKey": 12345678}, False, "idempotencyKey"),
    # no other properties; an object at all
    ({"domain": D, "unexpected": 1}, False, "unexpected"),
    ({"domain": D, "Domain": D}, False, "Domain"),
    ([{"domain": D}], False, "body"),
    ("acme.io", False, "body"),
]


@pytest.fixture()
def vendor(sim: httpx.Client) -> Iterator[httpx.Client]:
    yield sim


@pytest.mark.parametrize(("body", "accepted", "what"), TABLE, ids=lambda v: repr(v)[:40])
def test_simulator_agrees_with_the_table(
    vendor: httpx.Client, body: Any, accepted: bool, what: str
) -> None:
    response = vendor.post(PATH, json=body, headers=HEADERS)
    if accepted:
        assert response.status_code == 202, response.text
        assert response.json()["run"]["normalized_domain"] == what
    else:
        assert response.status_code == 400, response.text
        answer = response.json()
        assert answer["error"] == "invalid_request"
        assert answer["message"].startswith(what + " "), answer
        # The message names the field; it never repeats what was sent.
        if (
            isinstance(body, dict)
            and isinstance(body.get("domain"), str)
            and len(body["domain"]) > 12
        ):
            assert body["domain"] not in answer["message"]


@pytest.mark.parametrize(("body", "accepted", "what"), TABLE, ids=lambda v: repr(v)[:40])
def test_the_contracts_schema_alone_never_accepts_what_the_table_refuses_for_it(
    body: Any, accepted: bool, what: str
) -> None:
    """Rows accepted by the table are valid JSON Schema instances: the table does not invent
    rules that contradict the schema."""
    if accepted:
        assert Draft202012Validator(_contract_schema()).is_valid(body)


def test_defaults_decide_idempotency(vendor: httpx.Client) -> None:
    """Omitting a field and sending its documented default ask for the same run."""
    first = vendor.post(
        PATH, json={"domain": "same.io", "idempotencyKey": "same-run-01"}, headers=HEADERS
    )
    again = vendor.post(
        PATH,
        json={
            "domain": "https://www.same.io/",
            "idempotencyKey": "same-run-01",
            "icp": "content-led-saas",
            "maxContacts": 3,
            "drafts": 3,
            "freshnessDays": 90,
            "buyerRoles": [],
        },
        headers=HEADERS,
    )
    other = vendor.post(
        PATH,
        json={"domain": "same.io", "idempotencyKey": "same-run-01", "drafts": 2},
        headers=HEADERS,
    )
    assert first.status_code == 202
    assert again.status_code == 200 and again.json()["run"]["id"] == first.json()["run"]["id"]
    assert other.status_code == 409


def test_what_the_relay_accepts_the_vendor_accepts(vendor: httpx.Client) -> None:
    """The relay may refuse more than the vendor (a cheap early 400), never less: a body its
    model accepts would otherwise fail as `run.start_failed` after the 202."""
    mismatches = []
    for body, _, _ in TABLE:
        try:
            CreateWarmLeadRunRequest.model_validate(body)
        except ValidationError:
            continue
        response = vendor.post(PATH, json=body, headers=HEADERS)
        if response.status_code != 202:
            mismatches.append((body, response.status_code))
    assert mismatches == []
