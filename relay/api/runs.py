"""`/v1/runs`: start or track a run, read it with its events and deliveries, refresh, stop."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay import keys, signing
from relay.api.auth import tenant_of
from relay.api.body import parse
from relay.api.errors import ApiError, from_validation, not_found
from relay.api.guard import checked_url
from relay.api.schemas import RunCreate
from relay.ids import new_id
from relay.providers.base import Provider
from relay.secret_box import seal
from relay.store import subscriptions as subs_store
from relay.store.client import dumps
from relay.store.runs import (
    ACTIVE_STATES,
    STARTING,
    STOPPED,
    TRACKING,
    body_hash,
    create_run,
    get_tenant_run,
    list_runs,
    public_run,
    refresh_poll,
    unschedule,
    upstream_key,
)

#: A run-list cursor: "<score>:<run id>", the score a plain decimal as `repr(float)` writes it,
#: bounded so it is always finite. Also the cursor's `pattern` in /openapi.json.
CURSOR_PATTERN = r"^-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][-+]?[0-9]{1,2})?:"
_CURSOR = re.compile(CURSOR_PATTERN)


def _provider(request: Request, name: str) -> Provider:
    providers: dict[str, Provider] = request.app.state.providers
    if name not in providers:
        raise ApiError(
            400,
            "invalid_request",
            f"provider: unknown provider; expected one of {', '.join(providers)}",
            "provider",
        )
    return providers[name]


def _validated_input(provider: Provider, body: RunCreate) -> dict[str, Any] | None:
    if body.input is not None and body.upstream_run_id is not None:
        raise ApiError(
            400,
            "invalid_request",
            "give either input (start) or upstream_run_id (track), not both",
            "input",
        )
    if body.input is None and body.upstream_run_id is None:
        raise ApiError(
            400,
            "invalid_request",
            "input (start a run) or upstream_run_id (track one) is required",
            "input",
        )
    if provider.needs_agent_id and not body.agent_id:
        raise ApiError(
            400, "invalid_request", f"agent_id: required for {provider.name}", "agent_id"
        )
    if not provider.needs_agent_id and body.agent_id:
        raise ApiError(400, "invalid_request", f"agent_id: not used by {provider.name}", "agent_id")
    if body.input is None:
        return None
    if not provider.can_start:
        raise ApiError(
            400,
            "invalid_request",
            f"input: {provider.name} runs cannot be started "
            "through the relay; track them with upstream_run_id",
            "input",
        )
    try:
        return provider.validate_input(body.input)
    except ValidationError as exc:
        raise from_validation(exc, "input.") from None


async def ensure_callback_secret(request: Request, tenant: str) -> None:
    r = request.app.state.redis
    sealed = seal(signing.new_secret(), request.app.state.settings.relay_encryption_key)
    await r.set(keys.tenant_callback_secret(tenant), sealed, nx=True)


async def create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, RunCreate)
    provider = _provider(request, body.provider)
    payload = _validated_input(provider, body)
    callback_url = None
    if body.callback_url is not None:
        callback_url = await checked_url(request, body.callback_url, "callback_url")
    idem = request.headers.get("idempotency-key")
    if idem is not None and not 1 <= len(idem) <= 255:
        raise ApiError(
            400, "invalid_request", "Idempotency-Key must be 1-255 characters", "Idempotency-Key"
        )
    r = request.app.state.redis
    now = time.time()
    run_id = new_id("run")
    record: dict[str, str] = {
        "id": run_id,
        "tenant": tenant,
        "provider": provider.name,
        "agent_id": body.agent_id or "",
        "upstream_run_id": body.upstream_run_id or "",
        "state": STARTING if payload is not None else TRACKING,
        "status": "",
        "sequence": "0",
        "source": "start" if payload is not None else "track",
        "metadata": dumps(body.metadata or {}),
        "created_at": repr(now),
        "updated_at": repr(now),
        "poll_interval": "0",
    }
    if payload is not None:
        record["input"] = dumps(payload)
    callback_sub = None
    if callback_url:
        await ensure_callback_secret(request, tenant)
        record["callback_url"] = callback_url
        record["callback_sub"] = new_id("sub")
        # Written with the run, in one step (relay/store/runs.py create_run).
        callback_sub = subs_store.new_sub_fields(
            sub_id=record["callback_sub"],
            tenant=tenant,
            url=callback_url,
            filter_={},
            description=f"callback of {run_id}",
            sealed_secret=None,
            now=now,
            run_id=run_id,
        )
    created = await create_run(
        r,
        run=record,
        due_key=keys.DUE_START if payload is not None else keys.DUE_POLL,
        due_at=now,
        idempotency_key=idem,
        request_hash=body_hash(body.model_dump(mode="json")),
        upstream_key=None
        if payload is not None
        else upstream_key(tenant, provider.name, body.agent_id or "", body.upstream_run_id or ""),
        callback_sub=callback_sub,
    )
    if created.outcome == "conflict":
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was used with a different body",
            "Idempotency-Key",
        )
    run = await get_tenant_run(r, tenant, created.run_id)
    if run is None:
        raise not_found("run")
    status = 202 if created.outcome == "created" else 200
    return JSONResponse(public_run(run), status_code=status)


async def _events(request: Request, run_id: str) -> list[dict[str, Any]]:
    r = request.app.state.redis
    ids = await r.lrange(keys.run_events(run_id), 0, -1)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for evt in ids:
        pipe.hmget(keys.event(evt), "id", "type", "sequence", "status", "created_at", "subs")
    rows = await pipe.execute()
    pipe = r.pipeline(transaction=False)
    shape: list[tuple[int, str]] = []
    for index, row in enumerate(rows):
        for sub in (row[5] or "").split(","):
            if sub:
                shape.append((index, sub))
                pipe.hgetall(keys.delivery(row[0], sub))
    states = await pipe.execute() if shape else []
    out = [
        {
            "id": row[0],
            "type": row[1],
            "sequence": int(row[2] or 0),
            "status": row[3],
            "created_at": float(row[4] or 0),
            "deliveries": [],
        }
        for row in rows
    ]
    for (index, sub), state in zip(shape, states, strict=True):
        out[index]["deliveries"].append(
            {
                "subscription_id": sub,
                "state": state.get("state"),
                "attempts": int(state.get("attempts") or 0),
                "last_status_code": int(state["last_code"]) if state.get("last_code") else None,
                "last_error": state.get("last_error") or None,
                "next_attempt_at": float(state["next_at"]) if state.get("next_at") else None,
            }
        )
    return out


async def get_one(request: Request) -> Response:
    tenant = tenant_of(request)
    run = await get_tenant_run(request.app.state.redis, tenant, request.path_params["run_id"])
    if run is None:
        raise not_found("run")
    return JSONResponse({**public_run(run), "events": await _events(request, run["id"])})


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    q = request.query_params
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "invalid_request", "limit: must be an integer", "limit") from None
    if not 1 <= limit <= 200:
        raise ApiError(400, "invalid_request", "limit: must be 1-200", "limit")
    cursor = q.get("cursor")
    if cursor is not None:
        # Only a plain finite decimal, as the relay writes it: Redis refuses "nan", "1_0", "1 ".
        if not _CURSOR.match(cursor) or not math.isfinite(float(cursor.partition(":")[0])):
            raise ApiError(400, "invalid_request", "cursor: malformed", "cursor")
    runs, next_cursor = await list_runs(
        request.app.state.redis,
        tenant,
        limit=limit,
        cursor=cursor,
        provider=q.get("provider"),
        status=q.get("status"),
    )
    return JSONResponse({"data": [public_run(run) for run in runs], "next_cursor": next_cursor})


async def refresh(request: Request) -> Response:
    tenant = tenant_of(request)
    r = request.app.state.redis
    run = await get_tenant_run(r, tenant, request.path_params["run_id"])
    if run is None:
        raise not_found("run")
    if run.get("state") != TRACKING:
        raise ApiError(409, "not_tracking", f"the run is {run.get('state')}, not being polled")
    # 'scheduled', or 'queued' behind a poll in flight (never two polls of a run at once).
    outcome = await refresh_poll(r, run["id"])
    return JSONResponse({**public_run(run), "refresh": outcome}, status_code=202)


async def stop(request: Request) -> Response:
    tenant = tenant_of(request)
    r = request.app.state.redis
    run = await get_tenant_run(r, tenant, request.path_params["run_id"])
    if run is None:
        raise not_found("run")
    pipe = r.pipeline(transaction=True)
    if run.get("state") in ACTIVE_STATES:
        pipe.hset(keys.run(run["id"]), mapping={"state": STOPPED, "updated_at": repr(time.time())})
    unschedule(pipe, run["id"])
    await pipe.execute()
    return Response(status_code=204)
