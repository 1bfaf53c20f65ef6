"""`/v1/runs`: start or track a run, read it with its events and deliveries, refresh, stop.
Each handler parses the request, calls one operation of relay/ops/runs.py and renders JSON."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.api.body import parse, query_int
from relay.api.render import FastJSON
from relay.ops import runs
from relay.ops.deps import Deps
from relay.ops.inputs import RunCreate
from relay.ops.runs import CURSOR_PATTERN

__all__ = ["CURSOR_PATTERN", "create", "erase", "get_one", "list_all", "refresh", "stop"]


async def create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, RunCreate)
    started = await runs.start(
        Deps.of_state(request.app.state), tenant, body, request.headers.get("idempotency-key")
    )
    return FastJSON(started.run, status_code=202 if started.created else 200)


async def get_one(request: Request) -> Response:
    tenant = tenant_of(request)
    run = await runs.get(Deps.of_state(request.app.state), tenant, request.path_params["run_id"])
    return JSONResponse(run)


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    q = request.query_params
    found = await runs.page(
        Deps.of_state(request.app.state),
        tenant,
        limit=query_int(request, "limit", 50),
        cursor=q.get("cursor"),
        before=q.get("before"),
        provider=q.get("provider"),
        status=q.get("status"),
        delivery=q.get("delivery"),
    )
    return JSONResponse(
        {
            "data": found.runs,
            "next_cursor": found.next_cursor,
            "prev_cursor": found.prev_cursor,
            "total": found.total,
        }
    )


async def refresh(request: Request) -> Response:
    tenant = tenant_of(request)
    done = await runs.refresh(
        Deps.of_state(request.app.state), tenant, request.path_params["run_id"]
    )
    return JSONResponse({**done.run, "refresh": done.outcome}, status_code=202)


async def stop(request: Request) -> Response:
    tenant = tenant_of(request)
    await runs.stop(Deps.of_state(request.app.state), tenant, request.path_params["run_id"])
    return Response(status_code=204)


async def erase(request: Request) -> Response:
    tenant = tenant_of(request)
    await runs.erase(Deps.of_state(request.app.state), tenant, request.path_params["run_id"])
    return Response(status_code=204)
