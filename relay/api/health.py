"""Liveness, readiness, the Prometheus scrape target and the OpenAPI document."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.store import memory_guard
from relay.store.gauges import ApiMetrics


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready while Redis answers. Its memory against maxmemory is reported beside (`memory`); a
    store above the threshold keeps the api ready (reads, and the workers, go on) but it refuses
    new runs and subscriptions with 503 `store_full` (`accepting_new_work` says which)."""
    r = request.app.state.redis
    try:
        await asyncio.wait_for(r.ping(), timeout=1.0)
        memory = await asyncio.wait_for(memory_guard.read(r), timeout=1.0)
    except (RedisError, OSError, TimeoutError):
        return JSONResponse(
            {"error": "unavailable", "message": "Redis is unreachable"}, status_code=503
        )
    threshold = request.app.state.settings.memory_threshold
    return JSONResponse(
        {
            "status": "ready",
            "memory": memory.as_json(threshold),
            "accepting_new_work": memory.ratio < threshold,
        }
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def metrics(request: Request) -> Response:
    """`GET /metrics` (unauthenticated, like every Prometheus target; counts only)."""
    gauges: ApiMetrics = request.app.state.metrics
    await gauges.refresh(request.app.state.redis)
    return Response(gauges.render(), media_type=gauges.content_type)
