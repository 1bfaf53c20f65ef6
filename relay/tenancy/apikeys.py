"""API keys made at run time (`/v1/admin/api-keys`, `relay keys`), in Redis.

A key is `rk_` + 32 random bytes (url-safe base64), so its SHA-256 digest is as good as a salted
slow hash for storage: nobody can search a 256-bit space. Only the digest is stored. Lookup goes
through a digest → id index, then the record's own digest is compared in constant time. Revoking
deletes the record and its index entry in one transaction, so the next request with the key (and
the next console request of a session opened with it) finds nothing: 401 at once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from relay.ids import new_id
from relay.store import keys

PREFIX = "rk_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Found:
    id: str
    tenant: str


def public(row: dict[str, str]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant": row["tenant"],
        "description": row.get("description") or "",
        "key_hint": row.get("hint") or "",
        "created_at": float(row["created_at"]),
    }


async def create(r: aioredis.Redis, tenant: str, description: str) -> tuple[dict[str, Any], str]:
    key = PREFIX + secrets.token_urlsafe(32)
    key_id = new_id("key")
    now = time.time()
    row = {
        "id": key_id,
        "tenant": tenant,
        "description": description,
        "digest": digest(key),
        "hint": "…" + key[-4:],
        "created_at": repr(now),
    }
    pipe = r.pipeline(transaction=True)
    pipe.hset(keys.api_key(key_id), mapping=row)
    pipe.hset(keys.API_KEY_DIGESTS, row["digest"], key_id)
    pipe.zadd(keys.API_KEYS, {key_id: now})
    await pipe.execute()
    return public(row), key


async def list_all(r: aioredis.Redis) -> list[dict[str, Any]]:
    ids = await r.zrange(keys.API_KEYS, 0, -1)
    pipe = r.pipeline(transaction=False)
    for key_id in ids:
        pipe.hgetall(keys.api_key(key_id))
    rows = await pipe.execute() if ids else []
    return [public(row) for row in rows if row]


async def revoke(r: aioredis.Redis, key_id: str) -> bool:
    stored = await r.hget(keys.api_key(key_id), "digest")
    if stored is None:
        return False
    pipe = r.pipeline(transaction=True)
    pipe.hdel(keys.API_KEY_DIGESTS, stored)
    pipe.delete(keys.api_key(key_id))
    pipe.zrem(keys.API_KEYS, key_id)
    await pipe.execute()
    return True


async def lookup(r: aioredis.Redis, presented: str) -> Found | None:
    if not presented.startswith(PREFIX) or len(presented) > 256:
        return None
    wanted = digest(presented)
    key_id = await r.hget(keys.API_KEY_DIGESTS, wanted)
    if key_id is None:
        return None
    row = await r.hmget(keys.api_key(key_id), ["digest", "tenant"])
    if not row[0] or not row[1] or not hmac.compare_digest(row[0], wanted):
        return None
    return Found(key_id, row[1])


async def alive(r: aioredis.Redis, key_id: str) -> bool:
    return bool(await r.exists(keys.api_key(key_id)))
