"""Connections: a tenant's own vendor credential. Sealed at rest with RELAY_ENCRYPTION_KEY, never
shown back (only a `key_hint`: its last 4 characters, none of a key under 16), used by every
start, poll and watch of the tenant's runs from the next vendor call on
(relay/vendors/connections.py resolves it per call)."""

from __future__ import annotations

import time
from typing import Any

from relay.ops.deps import Deps
from relay.ops.errors import Conflict, NotFound
from relay.ops.inputs import ConnectionPut
from relay.secret_box import seal
from relay.store import keys
from relay.vendors.connections import SEALED


def _check_provider(deps: Deps, provider: str) -> None:
    """A connection is named by its provider: an unknown one is a resource that is not there."""
    if provider not in deps.providers:
        raise NotFound("provider")


#: A key shorter than this shows nothing of itself in its hint; a longer one its last 4.
HINT_MIN_LENGTH = 16


def key_hint(api_key: str) -> str:
    return "…" + (api_key[-4:] if len(api_key) >= HINT_MIN_LENGTH else "")


def public(provider: str, row: dict[str, str]) -> dict[str, Any]:
    return {
        "provider": provider,
        "key_hint": row.get("hint") or "",
        "created_at": float(row["created_at"]),
        "updated_at": float(row.get("updated_at") or row["created_at"]),
    }


async def put(
    deps: Deps, tenant: str, provider: str, body: ConnectionPut
) -> tuple[dict[str, Any], bool]:
    """Set (or replace) the tenant's key for `provider`; True when it is new."""
    _check_provider(deps, provider)
    now = repr(time.time())
    key = keys.connection(tenant, provider)
    pipe = deps.redis.pipeline(transaction=True)
    pipe.hsetnx(key, "created_at", now)
    pipe.hset(
        key,
        mapping={
            SEALED: seal(body.api_key, deps.settings.relay_encryption_key),
            "hint": key_hint(body.api_key),
            "updated_at": now,
        },
    )
    pipe.hgetall(key)
    created, _, row = await pipe.execute()
    return public(provider, row), bool(created)


async def get(deps: Deps, tenant: str, provider: str) -> dict[str, Any]:
    _check_provider(deps, provider)
    row: dict[str, str] = await deps.redis.hgetall(keys.connection(tenant, provider))
    if not row:
        raise NotFound("connection")
    return public(provider, row)


async def list_all(deps: Deps, tenant: str) -> list[dict[str, Any]]:
    pipe = deps.redis.pipeline(transaction=False)
    names = list(deps.providers)
    for name in names:
        pipe.hgetall(keys.connection(tenant, name))
    rows = await pipe.execute()
    return [public(name, row) for name, row in zip(names, rows, strict=True) if row]


async def delete(deps: Deps, tenant: str, provider: str) -> None:
    _check_provider(deps, provider)
    if not await deps.redis.delete(keys.connection(tenant, provider)):
        raise NotFound("connection")


async def require(deps: Deps, tenant: str, provider: str) -> None:
    """Refuse work for a vendor the tenant cannot reach: no connection of its own, and the
    operator does not share theirs (RELAY_SHARED_CONNECTIONS=false)."""
    if deps.settings.shared_connections:
        return
    if not await deps.redis.exists(keys.connection(tenant, provider)):
        raise Conflict(
            "no_connection",
            f"provider: this tenant has no {provider} connection; "
            f"PUT /v1/connections/{provider} with its api_key first",
            "provider",
        )
