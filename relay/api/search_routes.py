"""`/v1/search?q=`: a run, event or subscription by id, a run by upstream id, runs by domain
(relay/ops/search.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.ops import search as searching
from relay.ops.deps import Deps


async def search(request: Request) -> Response:
    tenant = tenant_of(request)
    found = await searching.search(
        Deps.of_state(request.app.state), tenant, request.query_params.get("q")
    )
    return JSONResponse(found.public())
