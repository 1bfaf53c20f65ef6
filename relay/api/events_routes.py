"""`/v1/events/{id}/redeliver` and the tenant's callback secret (relay/ops/deliveries.py,
relay/ops/subscriptions.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.api.auth import tenant_of
from relay.api.body import parse
from relay.ops import deliveries, subscriptions
from relay.ops.deps import Deps
from relay.ops.inputs import Redeliver


async def redeliver(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await parse(request, Redeliver, required=False)
    done = await deliveries.redeliver(
        Deps.of_state(request.app.state),
        tenant,
        request.path_params["event_id"],
        body.subscription_id,
    )
    return JSONResponse(
        {"event_id": done.event_id, "subscriptions": done.subscriptions}, status_code=202
    )


async def callback_secret(request: Request) -> Response:
    """Reveal the callback signing secret once; `?rotate=true` makes a new one."""
    tenant = tenant_of(request)
    secret = await subscriptions.callback_secret(
        Deps.of_state(request.app.state),
        tenant,
        rotate=request.query_params.get("rotate") == "true",
    )
    return JSONResponse({"secret": secret})
