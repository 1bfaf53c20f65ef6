"""`relay reencrypt`: re-seal every secret stored in Redis under the first RELAY_ENCRYPTION_KEY.

Rotation of the encryption key is: deploy RELAY_ENCRYPTION_KEY=new,old (the new key encrypts,
both decrypt), run `relay reencrypt`, then deploy RELAY_ENCRYPTION_KEY=new. Only the fields that
hold secrets are touched, and they are named in one place (`SECRET_FIELDS`): webhook secrets,
subscription header values, tenants' callback secrets, vendor connections. Anything else, a
tenant's run metadata `{"note": "enc:hello"}` say, is the tenant's data and is left alone, however
it looks. A secret field still stored in plain text (a relay that ran without a key) is sealed.
Each value is swapped only if it is still the value that was read (one script), so a concurrent
write is never overwritten with an older secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

import redis.asyncio as aioredis

from relay.secret_box import key_list, reseal
from relay.store import keys
from relay.store.client import bind

Reseal = Callable[[str, str | None], str]


def _value(raw: str, key: str | None) -> str:
    return reseal(raw, key)


def _json(raw: str) -> object:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _webhook_secrets(raw: str, key: str | None) -> str:
    """A subscription's signing secrets: a JSON list of {"s": sealed, "exp"}."""
    items = _json(raw)
    if not isinstance(items, list):
        return raw
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("s"), str):
            item["s"] = reseal(item["s"], key)
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def _header_values(raw: str, key: str | None) -> str:
    """A subscription's extra headers: a JSON object name -> sealed value
    (relay/delivery/sub_headers.py)."""
    headers = _json(raw)
    if not isinstance(headers, dict):
        return raw
    out = {k: reseal(v, key) if isinstance(v, str) else v for k, v in headers.items()}
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


#: Every secret the relay stores, and the only values `reencrypt` touches: (key pattern, hash
#: field or '' for a string key, how the field holds its secret(s)).
SECRET_FIELDS: tuple[tuple[str, str, Reseal], ...] = (
    (keys.tenant_callback_secret("*"), "", _value),
    (keys.connection("*", "*"), "sealed", _value),
    (keys.subscription("*"), "secrets", _webhook_secrets),
    (keys.subscription("*"), "headers", _header_values),
)


@dataclass
class Report:
    scanned: int = 0
    resealed: int = 0


def _secret_fields(name: str) -> list[tuple[str, Reseal]]:
    # `*` in fnmatch also matches ':', so a key must have as many parts as its pattern.
    return [
        (field, how)
        for pattern, field, how in SECRET_FIELDS
        if fnmatchcase(name, pattern) and name.count(":") == pattern.count(":")
    ]


async def reencrypt(r: aioredis.Redis, key: str | None) -> Report:
    if not key_list(key):
        raise ValueError("RELAY_ENCRYPTION_KEY is not set: there is nothing to encrypt with")
    swap = bind(r).swap_sealed
    report = Report()
    patterns = sorted({pattern for pattern, _, _ in SECRET_FIELDS})
    for pattern in patterns:
        async for name in r.scan_iter(match=pattern, count=500):
            fields = _secret_fields(name)
            if not fields:
                continue  # a key below one that holds secrets (`relay:sub:<id>:attempts`)
            report.scanned += 1
            for field, how in fields:
                for _ in range(5):  # a concurrent write makes the swap miss: read again
                    if field:
                        raw = await r.hget(name, field) if await r.type(name) == "hash" else None
                    else:
                        raw = await r.get(name) if await r.type(name) == "string" else None
                    if raw is None:
                        break
                    new = how(raw, key)
                    if new == raw or await swap(keys=[name], args=[field, raw, new]):
                        report.resealed += new != raw
                        break
    return report
