"""Identifiers. Event ids are derived, not random, so that every observer of the same transition
computes the same id: that is what makes "one event per transition" a key lookup."""

from __future__ import annotations

import base64
import hashlib
import secrets


def _token(nbytes: int = 12) -> str:
    return base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()


def new_id(prefix: str) -> str:
    return f"{prefix}_{_token()}"


def event_id(tenant: str, provider: str, upstream_run_id: str, status: str) -> str:
    """`evt_` + a digest of (provider, upstream run id, status), scoped to the tenant so two
    tenants tracking one upstream run each own their event."""
    material = "\x1f".join((tenant, provider, upstream_run_id, status)).encode()
    digest = hashlib.sha256(material).digest()[:16]
    return "evt_" + base64.b32encode(digest).decode().rstrip("=").lower()


def vendor_idempotency_key(run_id: str) -> str:
    """The key sent to a vendor's start call: stable for the relay run, so a retried start after
    a crash returns the existing vendor run instead of charging again."""
    return f"relay-{run_id}"
