"""`/v1/connections/{provider}`: the tenant's own vendor credential (write-only; a `key_hint` is
shown). Each handler calls one operation of relay/ops/connections.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.api.body import parse
from relay.ops import connections
from relay.ops.deps import Deps
from relay.ops.inputs import ConnectionPut


async def put(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, ConnectionPut)
    shown, created = await connections.put(
        Deps.of_state(request.app.state), tenant, request.path_params["provider"], body
    )
    return JSONResponse(shown, status_code=201 if created else 200)


async def get_one(request: Request) -> Response:
    tenant = tenant_of(request)
    deps = Deps.of_state(request.app.state)
    return JSONResponse(await connections.get(deps, tenant, request.path_params["provider"]))


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    return JSONResponse(
        {"data": await connections.list_all(Deps.of_state(request.app.state), tenant)}
    )


async def delete(request: Request) -> Response:
    tenant = tenant_of(request)
    await connections.delete(
        Deps.of_state(request.app.state), tenant, request.path_params["provider"]
    )
    return Response(status_code=204)
