"""Reading a JSON request body: size-capped while streaming, parsed, validated by a model."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from relay.api.errors import ApiError, from_validation

M = TypeVar("M", bound=BaseModel)

#: No request body of this API needs deeper nesting; deeper would trip serializers later on.
MAX_DEPTH = 32


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _no_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _check_values(data: Any) -> None:
    """Refuse what `json.loads` accepts but nothing downstream can store or send back: nesting
    beyond MAX_DEPTH and strings with lone surrogates (not encodable as UTF-8)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(
                    400, "invalid_json", "the body has a string that is not valid Unicode"
                ) from None
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ApiError(
                    400, "invalid_json", f"the body is nested deeper than {MAX_DEPTH} levels"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((item, depth + 1))


async def read_json(request: Request, *, required: bool = True) -> Any:
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "a JSON object body is required")
        return {}
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    _check_values(data)
    return data


async def parse(request: Request, model: type[M], *, required: bool = True) -> M:
    data = await read_json(request, required=required)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def query_int(request: Request, name: str, default: int) -> int:
    """An integer query parameter (its range is the operation's to check)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name}: must be an integer", name) from None
