"""`/v1/usage`: the tenant's usage counters per day since a time (relay/ops/usage.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.ops import usage
from relay.ops.deps import Deps


async def read(request: Request) -> Response:
    tenant = tenant_of(request)
    found = await usage.read(
        Deps.of_state(request.app.state), tenant, request.query_params.get("since")
    )
    return JSONResponse(found)
