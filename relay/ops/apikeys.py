"""API keys made at run time: create (the key shown once), list, revoke. The operator's views are
`/v1/admin/api-keys` (relay/api/admin.py) and `relay keys` (relay/cli.py); both call these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.ops.deps import Deps
from relay.ops.errors import NotFound
from relay.ops.inputs import ApiKeyCreate
from relay.tenancy import apikeys as store


@dataclass(frozen=True)
class Created:
    api_key: dict[str, Any]
    key: str  # shown once


async def create(deps: Deps, body: ApiKeyCreate) -> Created:
    shown, key = await store.create(deps.redis, body.tenant, body.description)
    return Created(shown, key)


async def list_all(deps: Deps) -> list[dict[str, Any]]:
    return await store.list_all(deps.redis)


async def revoke(deps: Deps, key_id: str) -> None:
    """Effective at once: API requests and console sessions of this key answer 401 from now."""
    if not await store.revoke(deps.redis, key_id):
        raise NotFound("api key")
