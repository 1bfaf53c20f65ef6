"""Secrets at rest: webhook secrets, tenants' callback secrets, vendor connections (and anything
else sealed with `seal`). With `RELAY_ENCRYPTION_KEY` a Redis dump alone does not reveal them;
without it they are stored as they are, which the README says plainly.

`RELAY_ENCRYPTION_KEY` is a comma-separated list of Fernet keys (cryptography's MultiFernet): the
first encrypts, every one decrypts. Rotation is: put a new key first, keep the old ones after it,
run `relay reencrypt` (which re-seals every stored value under the first key, `reseal`), then drop
the old keys."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_PREFIX = "enc:"


def key_list(keys: str | None) -> list[str]:
    return [k.strip() for k in (keys or "").split(",") if k.strip()]


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in key_list(keys)])


def is_sealed(stored: str) -> bool:
    return stored.startswith(_PREFIX)


def seal(secret: str, key: str | None) -> str:
    if not key_list(key):
        return secret
    assert key is not None
    return _PREFIX + _fernet(key).encrypt(secret.encode()).decode()


@lru_cache(maxsize=4096)
def unseal(stored: str, key: str | None) -> str:
    if not is_sealed(stored):
        return stored
    if not key_list(key):
        raise RuntimeError("a secret is encrypted but RELAY_ENCRYPTION_KEY is not set")
    assert key is not None
    try:
        return _fernet(key).decrypt(stored[len(_PREFIX) :].encode()).decode()
    except InvalidToken:
        raise RuntimeError("a secret does not decrypt with any RELAY_ENCRYPTION_KEY") from None


def reseal(stored: str, key: str | None) -> str:
    """`stored` sealed under the first key (a plain value becomes sealed, if a key is set)."""
    if not key_list(key):
        return stored
    assert key is not None
    if not is_sealed(stored):
        return seal(stored, key)
    try:
        token = _fernet(key).rotate(stored[len(_PREFIX) :].encode())
    except InvalidToken:
        raise RuntimeError("a secret does not decrypt with any RELAY_ENCRYPTION_KEY") from None
    return _PREFIX + token.decode()
