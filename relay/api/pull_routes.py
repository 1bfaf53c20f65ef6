"""`GET /v1/events`: the tenant's events, pulled (relay/delivery/pull.py does the work)."""

from __future__ import annotations

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response

from relay.api.auth import tenant_of
from relay.api.errors import ApiError
from relay.delivery import pull
from relay.store.autopipe import AutoPipeline


def _shared(state: State) -> tuple[AutoPipeline, pull.Waiter]:
    """The api process's one auto-pipeline and one waiter for pulls (made on first use)."""
    if getattr(state, "pull_waiter", None) is None:
        state.pull_pipe = pull.OneBatchAtATime(state.redis)
        state.pull_waiter = pull.Waiter(state.redis)
    return state.pull_pipe, state.pull_waiter


async def list_events(request: Request) -> Response:
    tenant = tenant_of(request)
    q = request.query_params
    try:
        query = pull.parse_query(q.get("after"), q.get("limit"), q.get("wait"))
    except pull.BadQuery as exc:
        raise ApiError(400, "invalid_request", str(exc), exc.field) from None
    pipe, waiter = _shared(request.app.state)
    items, cursor = await pull.pull(pipe, waiter, tenant, query)
    return Response(pull.page(items, cursor), media_type="application/json")


async def close(state: State) -> None:
    """Stop the waiter's subscription (app shutdown)."""
    waiter = getattr(state, "pull_waiter", None)
    if waiter is not None:
        await waiter.aclose()
