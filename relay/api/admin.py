"""`/v1/admin/api-keys`: the operator makes, lists and revokes tenants' API keys (RELAY_ADMIN_KEY).
Each handler calls one operation of relay/ops/apikeys.py, as `relay keys` does."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.body import parse
from relay.ops import apikeys
from relay.ops.deps import Deps
from relay.ops.inputs import ApiKeyCreate


async def create(request: Request) -> Response:
    body = await parse(request, ApiKeyCreate)
    made = await apikeys.create(Deps.of_state(request.app.state), body)
    return JSONResponse({**made.api_key, "key": made.key}, status_code=201)


async def list_all(request: Request) -> Response:
    return JSONResponse({"data": await apikeys.list_all(Deps.of_state(request.app.state))})


async def revoke(request: Request) -> Response:
    await apikeys.revoke(Deps.of_state(request.app.state), request.path_params["key_id"])
    return Response(status_code=204)
