"""Every error the API returns has the body `{"error": code, "message": text}` (plus `field` when
one field is at fault), whatever raised it: our checks, routing, JSON parsing or a fault.

This is the one place where the operations' domain errors (relay/ops/errors.py) become HTTP:
NotFound → 404 `not_found`, Invalid → 400 (its code, `invalid_request` or `unsafe_url`, and its
field), Conflict → 409 (its code), StoreFull → 503 `store_full` with Retry-After,
QuotaExceeded → 429 `quota_exceeded` naming the limit."""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.ops.errors import (
    Conflict,
    Invalid,
    NotFound,
    OpError,
    QuotaExceeded,
    StoreFull,
    invalid_from,
)

log = structlog.get_logger("relay.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra


def error_response(
    status: int,
    error: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message, **(extra or {})}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def from_validation(exc: ValidationError, prefix: str = "") -> ApiError:
    return from_op(invalid_from(exc, prefix))


def from_op(exc: OpError) -> ApiError:
    """A domain error of an operation, as the API answers it."""
    if isinstance(exc, NotFound):
        return not_found(exc.what)
    if isinstance(exc, Invalid):
        return ApiError(400, exc.code, exc.message, exc.field)
    if isinstance(exc, Conflict):
        return ApiError(409, exc.code, exc.message, exc.field)
    if isinstance(exc, StoreFull):
        return ApiError(
            503, "store_full", exc.message, headers={"retry-after": str(exc.retry_after)}
        )
    if isinstance(exc, QuotaExceeded):
        return ApiError(429, "quota_exceeded", exc.message, extra={"limit": exc.limit})
    return ApiError(400, "invalid_request", exc.message)


async def api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.message, exc.field, exc.headers, exc.extra)


async def op_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpError)
    err = from_op(exc)
    return error_response(err.status, err.error, err.message, err.field, err.headers, err.extra)


async def http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404:
        detail = "no such route"
    return error_response(
        exc.status_code, code, detail, headers=dict(exc.headers) if exc.headers else None
    )


async def store_unavailable(_: Request, exc: Exception) -> Response:
    log.warning("redis_unavailable", error=type(exc).__name__)
    return error_response(
        503,
        "unavailable",
        "the relay's store is unreachable; try again",
        headers={"retry-after": "2"},
    )


async def store_out_of_memory(request: Request, exc: Exception) -> Response:
    """Redis refused a write (maxmemory under noeviction): the same answer as the guard's."""
    log.warning("redis_out_of_memory")
    return await op_error(request, StoreFull())


async def internal_error(_: Request, exc: Exception) -> Response:
    log.exception("internal_error", error=type(exc).__name__)
    return error_response(500, "internal_error", "the relay hit an internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: api_error,
    OpError: op_error,
    HTTPException: http_error,
    RedisConnectionError: store_unavailable,
    RedisTimeoutError: store_unavailable,
    OutOfMemoryError: store_out_of_memory,
    Exception: internal_error,
}
