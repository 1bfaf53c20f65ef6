"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await asyncio.wait_for(request.app.state.redis.ping(), timeout=1.0)
    except (RedisError, OSError, TimeoutError):
        return JSONResponse(
            {"error": "unavailable", "message": "Redis is unreachable"}, status_code=503
        )
    return JSONResponse({"status": "ready"})


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)
