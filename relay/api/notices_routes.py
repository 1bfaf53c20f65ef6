"""`/v1/notices`: what the tenant must know (relay/ops/notices.py), newest first, paged, each
saying whether it is acknowledged; `POST /v1/notices/acknowledge` acknowledges them up to a time."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.api.body import parse, query_int
from relay.ops import notices
from relay.ops.deps import Deps
from relay.ops.inputs import NoticesAcknowledge
from relay.ops.paging import offset_of


async def list_all(request: Request) -> Response:
    tenant = tenant_of(request)
    found = await notices.page(
        Deps.of_state(request.app.state),
        tenant,
        offset=offset_of(request.query_params.get("cursor"), empty=False),
        limit=query_int(request, "limit", 50),
    )
    return JSONResponse(
        {"data": found.data, "total": found.total, "next_cursor": found.next_cursor}
    )


async def acknowledge(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, NoticesAcknowledge, required=False)
    until = await notices.acknowledge(Deps.of_state(request.app.state), tenant, body.until)
    return JSONResponse({"acknowledged_until": until})
