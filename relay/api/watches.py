"""`/v1/watches`: follow an Autoposting agent so the runs it starts are tracked by themselves.
Each handler calls one operation of relay/ops/watches.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.api.body import parse
from relay.ops import watches
from relay.ops.deps import Deps
from relay.ops.inputs import WatchCreate


async def create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, WatchCreate)
    watch = await watches.create(Deps.of_state(request.app.state), tenant, body)
    return JSONResponse(watch, status_code=201)


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    return JSONResponse({"data": await watches.list_all(Deps.of_state(request.app.state), tenant)})


async def get_one(request: Request) -> Response:
    tenant = tenant_of(request)
    deps = Deps.of_state(request.app.state)
    return JSONResponse(await watches.get(deps, tenant, request.path_params["watch_id"]))


async def delete(request: Request) -> Response:
    tenant = tenant_of(request)
    await watches.delete(Deps.of_state(request.app.state), tenant, request.path_params["watch_id"])
    return Response(status_code=204)


async def refresh(request: Request) -> Response:
    tenant = tenant_of(request)
    deps = Deps.of_state(request.app.state)
    watch = await watches.refresh(deps, tenant, request.path_params["watch_id"])
    return JSONResponse(watch, status_code=202)
