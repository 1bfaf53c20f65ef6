"""Webhook secrets at rest. With `RELAY_ENCRYPTION_KEY` (a Fernet key) a Redis dump alone does not
reveal them; without it they are stored as they are, which the README says plainly."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken

_PREFIX = "enc:"


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    return Fernet(key.encode())


def seal(secret: str, key: str | None) -> str:
    if not key:
        return secret
    return _PREFIX + _fernet(key).encrypt(secret.encode()).decode()


@lru_cache(maxsize=4096)
def unseal(stored: str, key: str | None) -> str:
    if not stored.startswith(_PREFIX):
        return stored
    if not key:
        raise RuntimeError("a webhook secret is encrypted but RELAY_ENCRYPTION_KEY is not set")
    try:
        return _fernet(key).decrypt(stored[len(_PREFIX) :].encode()).decode()
    except InvalidToken:
        raise RuntimeError("a webhook secret does not decrypt with RELAY_ENCRYPTION_KEY") from None
