"""`/v1/subscriptions`: who gets webhooks, their secrets, tests, the attempt log and recovery."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay import events, keys, signing
from relay.api.auth import tenant_of
from relay.api.body import parse
from relay.api.errors import ApiError, not_found
from relay.api.guard import checked_url
from relay.api.schemas import Recover, SubscriptionCreate, SubscriptionPatch
from relay.ids import new_id
from relay.secret_box import seal
from relay.store import lanes
from relay.store import subscriptions as store
from relay.store.client import dumps, loads

MAX_SUBSCRIPTIONS = 100


async def _own(request: Request) -> tuple[str, dict[str, str]]:
    tenant = tenant_of(request)
    sub = await store.get_tenant_sub(request.app.state.redis, tenant, request.path_params["sub_id"])
    if sub is None or sub.get("kind") == store.CALLBACK:
        raise not_found("subscription")
    return tenant, sub


def _seal(request: Request, secret: str) -> str:
    return seal(secret, request.app.state.settings.relay_encryption_key)


async def create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, SubscriptionCreate)
    url = await checked_url(request, body.url, "url")
    r = request.app.state.redis
    if await r.scard(keys.tenant_subs(tenant)) >= MAX_SUBSCRIPTIONS:
        raise ApiError(409, "limit_reached", f"a tenant may have {MAX_SUBSCRIPTIONS} subscriptions")
    secret = signing.new_secret()
    sub_id = new_id("sub")
    fields = store.new_sub_fields(
        sub_id=sub_id,
        tenant=tenant,
        url=url,
        filter_=body.filter.model_dump(),
        description=body.description,
        sealed_secret=_seal(request, secret),
        now=time.time(),
    )
    pipe = r.pipeline(transaction=True)
    pipe.hset(keys.subscription(sub_id), mapping=fields)
    pipe.sadd(keys.tenant_subs(tenant), sub_id)
    await pipe.execute()
    return JSONResponse({**store.public_sub(fields), "secret": secret}, status_code=201)


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    subs = await store.tenant_subs(request.app.state.redis, tenant)
    return JSONResponse({"data": [store.public_sub(s) for s in subs]})


async def get_one(request: Request) -> Response:
    _, sub = await _own(request)
    return JSONResponse(store.public_sub(sub))


async def patch(request: Request) -> Response:
    _, sub = await _own(request)
    body = await parse(request, SubscriptionPatch)
    r = request.app.state.redis
    now = time.time()
    fields: dict[str, str] = {"updated_at": repr(now)}
    if body.url is not None:
        fields["url"] = await checked_url(request, body.url, "url")
    if body.filter is not None:
        fields["filter"] = dumps(body.filter.model_dump())
    if body.description is not None:
        fields["description"] = body.description
    resume = False
    if body.enabled is not None:
        fields["enabled"] = "1" if body.enabled else "0"
        # Resumed on every enable, not only a change: a retried PATCH after a crash between
        # the two writes below still puts the parked lanes back (resume_lanes is idempotent).
        resume = body.enabled
        if body.enabled and sub.get("enabled") != "1":
            fields.update(disabled_reason="", disabled_at="", failing_since="")
        elif not body.enabled:
            fields.update(disabled_reason="disabled through the API", disabled_at=repr(now))
    await r.hset(keys.subscription(sub["id"]), mapping=fields)
    if resume:
        await store.resume_lanes(r, sub["id"], now)
    fresh = await store.get_sub(r, sub["id"])
    return JSONResponse(store.public_sub(fresh or sub))


async def delete(request: Request) -> Response:
    _, sub = await _own(request)
    await store.delete_sub(request.app.state.redis, sub)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    _, sub = await _own(request)
    settings = request.app.state.settings
    secret = signing.new_secret()
    now = time.time()
    secrets = store.rotated_secrets(sub, _seal(request, secret), now, settings.secret_grace)
    await request.app.state.redis.hset(
        keys.subscription(sub["id"]), mapping={"secrets": secrets, "updated_at": repr(now)}
    )
    return JSONResponse(
        {
            "id": sub["id"],
            "secret": secret,
            "previous_secret_expires_at": now + settings.secret_grace,
        }
    )


async def send_test(request: Request) -> Response:
    _, sub = await _own(request)
    if sub.get("enabled") != "1":
        raise ApiError(409, "subscription_disabled", "enable the subscription before testing it")
    r = request.app.state.redis
    now = time.time()
    event_id = await lanes.send_ping(r, sub, now)
    return JSONResponse({"event_id": event_id, "type": events.PING}, status_code=202)


async def deliveries(request: Request) -> Response:
    _, sub = await _own(request)
    q = request.query_params
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "invalid_request", "limit: must be an integer", "limit") from None
    if not 1 <= limit <= 200:
        raise ApiError(400, "invalid_request", "limit: must be 1-200", "limit")
    # An offset of at most 9 ASCII digits (as /openapi.json says): Redis list indexes are
    # signed 64-bit, and int() alone would take "+5", " 5" or other scripts' digits.
    raw_cursor = q.get("cursor", "0")
    if not (raw_cursor.isascii() and raw_cursor.isdigit() and len(raw_cursor) <= 9):
        raise ApiError(400, "invalid_request", "cursor: malformed", "cursor")
    offset = int(raw_cursor)
    rows = await request.app.state.redis.lrange(
        keys.sub_attempts(sub["id"]), offset, offset + limit - 1
    )
    event_filter = q.get("event_id")
    data = [loads(row) for row in rows]
    if event_filter:
        data = [row for row in data if row.get("event_id") == event_filter]
    more = len(rows) == limit
    return JSONResponse({"data": data, "next_cursor": str(offset + limit) if more else None})


async def recover(request: Request) -> Response:
    _, sub = await _own(request)
    body = await parse(request, Recover)
    r = request.app.state.redis
    dead = await r.zrangebyscore(keys.sub_dead(sub["id"]), body.since, "+inf")
    now = time.time()
    for item in dead:
        event_id, _, run_id = item.partition("|")
        await lanes.enqueue(r, sub["id"], run_id, event_id, now)
        await r.zrem(keys.sub_dead(sub["id"]), item)
    return JSONResponse({"recovered": len(dead)}, status_code=202)
