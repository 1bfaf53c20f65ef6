"""`/v1/subscriptions`: who gets webhooks, their secrets, tests, the attempt log and recovery.
Each handler parses the request, calls one operation (relay/ops/subscriptions.py,
relay/ops/deliveries.py) and renders JSON."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.api.body import parse, query_int
from relay.api.errors import ApiError
from relay.ops import deliveries, subscriptions
from relay.ops.deps import Deps
from relay.ops.inputs import Recover, SubscriptionCreate, SubscriptionPatch
from relay.ops.paging import offset_of


def _args(request: Request) -> tuple[Deps, str, str]:
    return Deps.of_state(request.app.state), tenant_of(request), request.path_params["sub_id"]


async def create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, SubscriptionCreate)
    made = await subscriptions.create(Deps.of_state(request.app.state), tenant, body)
    return JSONResponse({**made.subscription, "secret": made.secret}, status_code=201)


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    subs = await subscriptions.list_all(Deps.of_state(request.app.state), tenant)
    return JSONResponse({"data": subs})


async def get_one(request: Request) -> Response:
    return JSONResponse(await subscriptions.get(*_args(request)))


async def patch(request: Request) -> Response:
    deps, tenant, sub_id = _args(request)
    await subscriptions.own(deps, tenant, sub_id)  # 404 before a body error, as before
    body = await parse(request, SubscriptionPatch)
    sub = await subscriptions.patch(deps, tenant, sub_id, body, by="through the API")
    return JSONResponse(sub)


async def delete(request: Request) -> Response:
    await subscriptions.delete(*_args(request))
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    rotated = await subscriptions.rotate_secret(*_args(request))
    return JSONResponse(
        {
            "id": rotated.id,
            "secret": rotated.secret,
            "previous_secret_expires_at": rotated.previous_secret_expires_at,
        }
    )


async def send_test(request: Request) -> Response:
    pinged = await subscriptions.send_test(*_args(request))
    return JSONResponse({"event_id": pinged.event_id, "type": pinged.type}, status_code=202)


async def deliveries_log(request: Request) -> Response:
    deps, tenant, sub_id = _args(request)
    await subscriptions.own(deps, tenant, sub_id)
    limit = query_int(request, "limit", 50)
    if not 1 <= limit <= 200:
        raise ApiError(400, "invalid_request", "limit: must be 1-200", "limit")
    # An offset of at most 9 ASCII digits (as /openapi.json says): Redis list indexes are
    # signed 64-bit, and int() alone would take "+5", " 5" or other scripts' digits.
    raw_cursor = request.query_params.get("cursor", "0")
    if not (raw_cursor.isascii() and raw_cursor.isdigit() and len(raw_cursor) <= 9):
        raise ApiError(400, "invalid_request", "cursor: malformed", "cursor")
    found = await deliveries.attempts(
        deps,
        tenant,
        sub_id,
        offset=int(raw_cursor),
        limit=limit,
        event_id=request.query_params.get("event_id"),
    )
    return JSONResponse(
        {"data": found.data, "next_cursor": found.next_cursor, "total": found.total}
    )


async def recover(request: Request) -> Response:
    deps, tenant, sub_id = _args(request)
    await subscriptions.own(deps, tenant, sub_id)
    body = await parse(request, Recover)
    done = await deliveries.recover(deps, tenant, sub_id, body.since)
    return JSONResponse({"recovered": done.recovered}, status_code=202)


async def dead_letters(request: Request) -> Response:
    deps, tenant, sub_id = _args(request)
    found = await deliveries.dead_letters(
        deps,
        tenant,
        sub_id,
        offset=offset_of(request.query_params.get("cursor"), empty=False),
        limit=query_int(request, "limit", 50),
    )
    return JSONResponse(
        {
            "data": [
                {"event_id": d.event_id, "run_id": d.run_id, "dead_at": d.dead_at}
                for d in found.data
            ],
            "total": found.total,
            "next_cursor": found.next_cursor,
        }
    )


async def health(request: Request) -> Response:
    return JSONResponse((await deliveries.health(*_args(request))).public())
