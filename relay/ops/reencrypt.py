"""`relay reencrypt`: re-seal every secret stored in Redis under the first RELAY_ENCRYPTION_KEY.

Rotation of the encryption key is: deploy RELAY_ENCRYPTION_KEY=new,old (the new key encrypts,
both decrypt), run `relay reencrypt`, then deploy RELAY_ENCRYPTION_KEY=new. This finds sealed
values wherever they are (a string or hash field starting `enc:`, or such strings inside a JSON
field: webhook secrets, tenants' callback secrets, vendor connections, subscription headers), and
also seals the known secret fields still stored in plain text (a relay that ran without a key).
Each value is swapped only if it is still the value that was read (one script), so a concurrent
write is never overwritten with an older secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import redis.asyncio as aioredis

from relay.secret_box import is_sealed, key_list, reseal
from relay.store.client import bind

#: Secrets the relay stores, by key pattern and hash field ('' for a string key): sealed here even
#: if they were written in plain text. Sealed values elsewhere are found by their `enc:` prefix.
KNOWN = (
    ("relay:tenant:*:callback-secret", ""),
    ("relay:tenant:*:conn:*", "sealed"),
)


@dataclass
class Report:
    scanned: int = 0
    resealed: int = 0


def _walk(value: Any, key: str | None, plain_s: bool) -> Any:
    """`value` with every sealed string re-sealed (and, for webhook secrets lists, plain `s`)."""
    if isinstance(value, str):
        return reseal(value, key) if is_sealed(value) else value
    if isinstance(value, list):
        return [_walk(v, key, plain_s) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if plain_s and k == "s" and isinstance(v, str):
                out[k] = reseal(v, key)
            else:
                out[k] = _walk(v, key, plain_s)
        return out
    return value


def _fresh(name: str, field: str, raw: str, key: str | None) -> str:
    known = any(fnmatchcase(name, pattern) and field == f for pattern, f in KNOWN)
    if is_sealed(raw) or known:
        return reseal(raw, key)
    sub_secret = name.startswith("relay:sub:") and field in ("secrets", "headers")
    if "enc:" in raw or sub_secret:
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw
        if sub_secret and field == "headers" and isinstance(parsed, dict):
            # Subscription headers: name → sealed value (relay/delivery/sub_headers.py); every
            # value is one.
            parsed = {k: reseal(v, key) if isinstance(v, str) else v for k, v in parsed.items()}
        else:
            parsed = _walk(parsed, key, field == "secrets")
        return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)
    return raw


async def reencrypt(r: aioredis.Redis, key: str | None) -> Report:
    if not key_list(key):
        raise ValueError("RELAY_ENCRYPTION_KEY is not set: there is nothing to encrypt with")
    swap = bind(r).swap_sealed
    report = Report()
    async for name in r.scan_iter(match="relay:*", count=500):
        kind = await r.type(name)
        report.scanned += 1
        for _ in range(5):  # a concurrent write makes the swap miss: read again
            items: list[tuple[str, str | None]]
            if kind == "string":
                items = [("", await r.get(name))]
            elif kind == "hash":
                row: dict[str, str] = await r.hgetall(str(name))
                items = list(row.items())
            else:
                break
            missed = False
            for field, raw in items:
                if raw is None:
                    continue
                new = _fresh(name, field, raw, key)
                if new == raw:
                    continue
                if await swap(keys=[name], args=[field, raw, new]):
                    report.resealed += 1
                else:
                    missed = True
            if not missed:
                break
    return report
