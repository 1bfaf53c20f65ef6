"""`/v1/events/{id}/redeliver` and the tenant's callback secret."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay import keys, signing
from relay.api.auth import tenant_of
from relay.api.body import parse
from relay.api.errors import ApiError, not_found
from relay.api.schemas import Redeliver
from relay.secret_box import seal, unseal
from relay.store import lanes
from relay.store.runs import get_tenant_run
from relay.store.subscriptions import get_tenant_sub


async def redeliver(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, Redeliver, required=False)
    r = request.app.state.redis
    event = await r.hgetall(keys.event(request.path_params["event_id"]))
    if not event:
        raise not_found("event")
    run_id = event.get("run_id") or "ping"
    owner = event.get("tenant")
    if run_id != "ping":
        run = await get_tenant_run(r, tenant, run_id)
        owner = run["tenant"] if run else None
    if owner != tenant:
        raise not_found("event")
    targets = [s for s in (event.get("subs") or "").split(",") if s]
    if body.subscription_id is not None:
        if body.subscription_id not in targets:
            raise ApiError(
                400,
                "invalid_request",
                "subscription_id: the event was not sent to this subscription",
                "subscription_id",
            )
        targets = [body.subscription_id]
    now = time.time()
    queued = []
    for sub_id in targets:
        if await get_tenant_sub(r, tenant, sub_id) is None:
            continue
        await lanes.enqueue(r, sub_id, run_id, event["id"], now)
        queued.append(sub_id)
    return JSONResponse({"event_id": event["id"], "subscriptions": queued}, status_code=202)


async def callback_secret(request: Request) -> Response:
    """Reveal the tenant's callback signing secret once; `?rotate=true` makes a new one (the old
    stops signing at once: callbacks are per-run, so there is no endpoint to migrate)."""
    tenant = tenant_of(request)
    r = request.app.state.redis
    key_name = keys.tenant_callback_secret(tenant)
    enc_key = request.app.state.settings.relay_encryption_key
    rotate = request.query_params.get("rotate") == "true"
    if rotate:
        await r.set(key_name, seal(signing.new_secret(), enc_key))
        await r.delete(key_name + ":revealed")
    else:
        await r.set(key_name, seal(signing.new_secret(), enc_key), nx=True)
    if not await r.set(key_name + ":revealed", "1", nx=True):
        raise ApiError(
            409,
            "already_revealed",
            "the callback secret was already shown; "
            "POST /v1/callback-secret?rotate=true makes a new one",
        )
    stored = await r.get(key_name)
    return JSONResponse({"secret": unseal(stored, enc_key)})
