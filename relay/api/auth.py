"""Bearer API keys mapped to tenants, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from relay.api.errors import ApiError


class KeyRing:
    """Holds digests of the configured keys. Every presented key is compared against every
    configured digest with `hmac.compare_digest`, so the time taken says nothing about which
    key, or how much of one, matched."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._entries = [(hashlib.sha256(k.encode()).digest(), t) for k, t in keys.items()]

    def tenant(self, presented: str) -> str | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for known, tenant in self._entries:
            if hmac.compare_digest(digest, known):
                found = tenant
        return found


def tenant_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    ring: KeyRing = request.app.state.keyring
    tenant = ring.tenant(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if tenant is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
            headers={"www-authenticate": "Bearer"},
        )
    return tenant
