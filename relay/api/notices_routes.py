"""`/v1/notices`: what the tenant must know (relay/ops/notices.py), newest first, paged."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.api.body import query_int
from relay.ops import notices
from relay.ops.deps import Deps
from relay.ops.paging import offset_of


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    found = await notices.page(
        Deps.of_state(request.app.state),
        tenant,
        offset=offset_of(request.query_params.get("cursor")),
        limit=query_int(request, "limit", 50),
    )
    return JSONResponse(
        {"data": found.data, "total": found.total, "next_cursor": found.next_cursor}
    )
