"""Standard Webhooks signing (https://www.standardwebhooks.com), byte-compatible with the
`standardwebhooks` and `svix` libraries so subscribers can verify with either, unchanged.

During a secret rotation the old and new secrets both sign each message (newest first), so a
receiver holding either secret keeps verifying while it is being reconfigured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

SECRET_PREFIX = "whsec_"  # noqa: S105 - the public prefix, not a secret
SECRET_BYTES = 32
DEFAULT_TOLERANCE = 300


def new_secret() -> str:
    """A fresh signing secret in the `whsec_<base64>` form the verifier libraries expect."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode("ascii")


@lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    """Decode a secret once: every delivery signs, so base64 work is kept off the hot path.

    Decoding is as lenient as the reference library's (missing padding tolerated), so any
    secret it accepts signs identically here.
    """
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw + "==")
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not valid base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _digest(secret: str, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(_key(secret), signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of `{msg_id}.{timestamp}.{body}`."""
    return "v1," + base64.b64encode(_digest(secret, msg_id, timestamp, body)).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret, in the order given (newest
    first), duplicates dropped so a rotation to the same secret does not sign twice."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    unique = dict.fromkeys(secrets)
    return " ".join(sign(s, msg_id, timestamp, body) for s in unique)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """All headers a signed delivery carries."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    now: int | None = None,
) -> bool:
    """True if `headers` carry a valid signature of `body` by `secret`, fresh within
    `tolerance` seconds. Used by the demo receiver; never raises on hostile input."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id") or lowered.get("svix-id")
    raw_ts = lowered.get("webhook-timestamp") or lowered.get("svix-timestamp")
    signatures = lowered.get("webhook-signature") or lowered.get("svix-signature")
    if not (msg_id and raw_ts and signatures):
        return False
    try:
        timestamp = int(raw_ts)
        expected = _digest(secret, msg_id, timestamp, body)
    except ValueError:
        return False
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    for candidate in signatures.split(" "):
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return True
    return False
