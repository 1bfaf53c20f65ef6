"""SSRF check of subscriber and callback URLs when they are given (send time checks again)."""

from __future__ import annotations

from relay.ops.deps import Deps
from relay.ops.errors import Invalid
from relay.ssrf import UnsafeURL, check_url


async def checked_url(deps: Deps, url: str, field: str) -> str:
    try:
        await check_url(url, deps.settings.allow_private_urls)
    except UnsafeURL as exc:
        raise Invalid(field, f"{field}: {exc}", "unsafe_url") from None
    return url
