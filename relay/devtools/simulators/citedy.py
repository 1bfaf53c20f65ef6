"""The Citedy warm-lead API as its contract describes it: bearer `citedy_agent_*` keys, 40
credits per accepted new run, idempotency keys scoped per API key, and runs that walk
queued → signals_running → contacts_running → drafting_running → completed (or blocked/failed for
domains that ask for it) as time passes."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.devtools.simulators.citedy_contract import Refused, validate
from relay.devtools.simulators.state import (
    CitedyRun,
    SimConfig,
    SimState,
    iso,
    key_id,
    phase_index,
)

CREDITS_PER_RUN = 40
KEY_PREFIX = "citedy_agent_"
BASE_PATH = "/api/agent/citedy-warm-lead"
TERMINAL = frozenset({"completed", "blocked", "failed"})
_STAGES = ("queued", "signals_running", "contacts_running", "drafting_running")
PATHS: dict[str, tuple[str, ...]] = {
    "completed": (*_STAGES, "completed"),
    "blocked": ("queued", "signals_running", "blocked"),
    "failed": ("queued", "signals_running", "contacts_running", "failed"),
}
TOPUP = {
    "recommended_package_credits": 1000,
    "recommended_package_price_usd": 10.0,
    "topup_url": "https://www.citedy.com/dashboard/billing?package=credits_1000",
}
_DEFAULT_ROLES = ("Head of Marketing", "VP Growth", "Content Lead")
_PEOPLE = ("Alex Morgan", "Sam Rivera", "Jordan Lee", "Casey Kim", "Riley Chen", "Taylor Brooks")


def error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "message": message, **(extra or {})}, status_code=status, headers=headers
    )


def authenticate(request: Request, state: SimState) -> str | Response:
    """The API key, or the 401 the vendor answers."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(KEY_PREFIX) or token == KEY_PREFIX:
        return error(
            401,
            "unauthorized",
            "Missing or invalid API key: send Authorization: Bearer citedy_agent_...",
        )
    if token in state.revoked:
        return error(401, "unauthorized", "This API key has been revoked.")
    return token


def outcome_for(normalized_domain: str) -> str:
    """Test domains choose their ending: `blocked…` is refused by policy, `…fail…` errors out."""
    first = normalized_domain.split(".", 1)[0]
    if "blocked" in first:
        return "blocked"
    if "fail" in first:
        return "failed"
    return "completed"


def _rng_for(run: CitedyRun) -> random.Random:
    """Content depends only on the domain, so one company always gets the same report."""
    digest = hashlib.sha256(run.normalized_domain.encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _contacts(run: CitedyRun, rng: random.Random) -> list[dict[str, Any]]:
    roles = list(run.params["buyerRoles"]) or list(_DEFAULT_ROLES)
    people = rng.sample(_PEOPLE, 3)
    out = []
    for index in range(min(int(run.params["maxContacts"]), 3)):
        name = people[index]
        first, last = name.lower().split()
        out.append(
            {
                "id": f"ct_{index + 1}",
                "name": name,
                "role": roles[index % len(roles)],
                "email": f"{first}.{last}@{run.normalized_domain}",
                "email_status": "verified" if index == 0 else "likely",
                "linkedin_url": f"https://www.linkedin.com/in/{first}-{last}",
                "confidence": round(0.9 - index * 0.1, 2),
            }
        )
    return out


def build_result(run: CitedyRun, base_url: str) -> dict[str, Any]:
    """A complete WarmLeadResult: the canonical JSON the CSV/XLSX exports flatten."""
    rng = _rng_for(run)
    domain = run.normalized_domain
    name = domain.split(".", 1)[0].replace("-", " ").title()
    freshness = int(run.params["freshnessDays"])
    signals = [
        {
            "id": f"sig_{index + 1}",
            "type": kind,
            "title": title.format(name=name),
            "source_url": f"https://{domain}/{slug}",
            "observed_at": iso(run.created_at - rng.randint(1, freshness) * 86400),
            "weight": round(rng.uniform(0.4, 1.0), 2),
        }
        for index, (kind, title, slug) in enumerate(
            (
                ("hiring", "{name} is hiring a Head of Content", "careers"),
                ("content_velocity", "{name} doubled its publishing cadence", "blog"),
                ("tech_change", "{name} added a new analytics stack", "changelog"),
            )
        )
    ]
    contacts = _contacts(run, rng)
    fit, intent = rng.randint(55, 95), rng.randint(40, 95)
    total = round(fit * 0.6 + intent * 0.4)
    tier = "A" if total >= 80 else "B" if total >= 65 else "C"
    drafts = [
        {
            "id": f"dr_{index + 1}",
            "contact_id": contacts[index % len(contacts)]["id"],
            "channel": "email",
            "subject": f"{name}: a thought on your content engine",
            "body": f"Hi {contacts[index % len(contacts)]['name'].split()[0]}, noticed {name} ...",
        }
        for index in range(min(int(run.params["drafts"]), 3))
    ]
    export_base = f"{base_url.rstrip('/')}{BASE_PATH}/{run.id}/export"
    return {
        "runId": run.id,
        "status": "completed",
        "account": {
            "domain": domain,
            "name": name,
            "icp": run.params["icp"],
            "employee_range": rng.choice(("11-50", "51-200", "201-500")),
            "country": "US",
            "website": f"https://{domain}",
        },
        "signals": signals,
        "contacts": contacts,
        "scoring": {"fit": fit, "intent": intent, "total": total, "tier": tier},
        "drafts": drafts,
        "policy": {
            "icp": run.params["icp"],
            "freshnessDays": freshness,
            "maxContacts": run.params["maxContacts"],
            "drafts": run.params["drafts"],
            "basis": "b2b_legitimate_interest",
        },
        "counters": {
            "signals": len(signals),
            "contacts": len(contacts),
            "drafts": len(drafts),
            "credits_charged": CREDITS_PER_RUN,
        },
        "exportRows": [
            {
                "domain": domain,
                "account_name": name,
                "contact_name": contact["name"],
                "role": contact["role"],
                "email": contact["email"],
                "score": total,
                "tier": tier,
            }
            for contact in contacts
        ],
        "exportUrls": {"csv": f"{export_base}.csv", "xlsx": f"{export_base}.xlsx"},
    }


def durations(config: SimConfig, path: tuple[str, ...]) -> tuple[float, ...]:
    """Each status's length on `path` (the terminal one stays): `citedy_phase_seconds` where it
    names the status, else `step_seconds` (0: straight to the end)."""
    own = config.citedy_phase_seconds
    return tuple(own.get(status, config.step_seconds) for status in path[:-1])


def render_run(run: CitedyRun, now: float, base_url: str) -> dict[str, Any]:
    """The WarmLeadRun as it looks at `now` (the contract forbids extra properties)."""
    index, changed_at = phase_index(run.created_at, run.durations, now)
    status = run.path[index]
    terminal = status in TERMINAL
    return {
        "id": run.id,
        "status": status,
        "domain": run.domain,
        "normalized_domain": run.normalized_domain,
        "credits_charged": CREDITS_PER_RUN,
        "blocked_reason": (
            "Domain is on the outreach suppression list." if status == "blocked" else None
        ),
        "error_message": "Contact enrichment provider failed." if status == "failed" else None,
        "result": build_result(run, base_url) if status == "completed" else None,
        "provider_counters": {"steps_completed": index, "signal_queries": min(index, 1) * 3},
        "created_at": iso(run.created_at),
        "updated_at": iso(changed_at),
        "completed_at": iso(changed_at) if terminal else None,
    }


_NOT_JSON = object()


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return _NOT_JSON


def _payment_required(balance: int) -> Response:
    return error(
        402,
        "insufficient_credits",
        f"A warm-lead run needs {CREDITS_PER_RUN} credits; this key has {balance}.",
        extra={
            "credits_required": CREDITS_PER_RUN,
            "credits_available": balance,
            "breakdown": {"warm_lead_run": CREDITS_PER_RUN},
            "topup": TOPUP,
        },
    )


async def create_run(request: Request, state: SimState, api_key: str) -> Response:
    payload = await _json_body(request)
    if payload is _NOT_JSON:
        return error(400, "invalid_request", "Request body must be valid JSON.")
    try:
        params = validate(payload)  # the simulator's own reading of the contract
    except Refused as exc:
        return error(400, "invalid_request", exc.message)
    idempotency_key: str | None = payload.get("idempotencyKey")
    now = state.clock()
    base_url = str(request.base_url)
    if idempotency_key is not None:
        existing = state.citedy_runs.get(state.idempotency.get((api_key, idempotency_key), ""))
        if existing is not None:
            if existing.params != params:
                return error(
                    409,
                    "idempotency_conflict",
                    "idempotencyKey was already used with a different domain or options.",
                )
            run_out = render_run(existing, now, base_url)
            return JSONResponse({"run": run_out, "credits_charged": 0, "idempotent": True})
    balance = state.balance(api_key)
    if balance < CREDITS_PER_RUN:
        return _payment_required(balance)
    path = PATHS[outcome_for(params["domain"])]
    run = CitedyRun(
        id=str(uuid.uuid4()),
        owner=api_key,
        domain=payload["domain"],
        normalized_domain=params["domain"],
        params=params,
        idempotency_key=idempotency_key,
        created_at=now,
        durations=durations(state.config, path),
        path=path,
    )
    state.citedy_runs[run.id] = run
    if idempotency_key is not None:
        state.idempotency[(api_key, idempotency_key)] = run.id
    state.credits[api_key] = balance - CREDITS_PER_RUN
    state.stats.record_charge(key_id(api_key), CREDITS_PER_RUN)
    state.stats.runs_created += 1
    content = {"run": render_run(run, now, base_url), "credits_charged": CREDITS_PER_RUN}
    return JSONResponse({**content, "idempotent": False}, status_code=202)


async def get_run(request: Request, state: SimState, api_key: str) -> Response:
    run_id = str(request.path_params["runId"])
    try:
        canonical = str(uuid.UUID(run_id))
    except ValueError:
        return error(400, "invalid_request", "runId must be a UUID.")
    run = state.citedy_runs.get(canonical)
    if run is None or run.owner != api_key:
        return error(404, "not_found", "Warm-lead run not found.")
    state.stats.record_get(run.id)
    return JSONResponse({"run": render_run(run, state.clock(), str(request.base_url))})
