"""Bearer API keys mapped to tenants, compared in constant time.

Two sources: the keys configured in the environment (RELAY_API_KEYS, for bootstrap), held as
digests in a `KeyRing`, and the keys made at run time through the admin API (relay/store/
apikeys.py), looked up in Redis by digest. Every non-public route of the table is wrapped by
`authenticated` (relay/api/app.py), which resolves the tenant once per request; `tenant_of` then
reads it. Admin routes are wrapped by `admin_only` instead (RELAY_ADMIN_KEY)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from relay.api.errors import ApiError
from relay.tenancy import apikeys

Endpoint = Callable[[Request], Awaitable[Response]]


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


@dataclass(frozen=True)
class Identity:
    tenant: str
    key_id: str  # '' for a key from the environment (it cannot be revoked at run time)


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "a valid API key is required: Authorization: Bearer <key>",
        headers={"www-authenticate": "Bearer"},
    )


def bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def identify(request: Request, presented: str) -> Identity | None:
    """The tenant of a presented key: the environment's keys, else the run-time keys."""
    if not presented:
        return None
    ring: KeyRing = request.app.state.keyring
    tenant = ring.tenant(presented)
    if tenant is not None:
        return Identity(tenant, "")
    if not presented.startswith(apikeys.PREFIX):
        return None  # not a run-time key: no need to ask Redis
    found = await apikeys.lookup(request.app.state.redis, presented)
    return Identity(found.tenant, found.id) if found else None


def authenticated(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        who = await identify(request, bearer(request))
        if who is None:
            raise _unauthorized()
        request.state.tenant = who.tenant
        return await endpoint(request)

    return wrapped


def admin_only(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        expected = request.app.state.settings.relay_admin_key
        if not expected:
            raise ApiError(404, "not_found", "the admin API is off (RELAY_ADMIN_KEY is not set)")
        given = hashlib.sha256(bearer(request).encode()).digest()
        if not hmac.compare_digest(given, hashlib.sha256(expected.encode()).digest()):
            raise _unauthorized()
        return await endpoint(request)

    return wrapped


def tenant_of(request: Request) -> str:
    """The request's tenant, as `authenticated` resolved it (or, for a route not wrapped, from
    the environment's keys)."""
    tenant: str | None = getattr(request.state, "tenant", None)
    if tenant is None:
        ring: KeyRing = request.app.state.keyring
        token = bearer(request)
        tenant = ring.tenant(token) if token else None
    if tenant is None:
        raise _unauthorized()
    return tenant
