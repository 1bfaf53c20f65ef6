"""SSRF check of subscriber and callback URLs at creation (send time checks again)."""

from __future__ import annotations

from starlette.requests import Request

from relay.api.errors import ApiError
from relay.ssrf import UnsafeURL, check_url


async def checked_url(request: Request, url: str, field: str) -> str:
    try:
        await check_url(url, request.app.state.settings.allow_private_urls)
    except UnsafeURL as exc:
        raise ApiError(400, "unsafe_url", f"{field}: {exc}", field) from None
    return url
