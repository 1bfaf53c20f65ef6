"""A subscription's extra request headers (a CRM's own token header, say): checked once at the
API, stored sealed (relay/secret_box.py, RELAY_ENCRYPTION_KEY) in the subscription hash under
`headers`, never shown back (the API returns their names), unsealed by the worker per delivery.

Names that would let a subscriber's configuration forge or break the relay's own request are
refused: the Standard Webhooks headers (`webhook-*`), the body's description (`content-*`),
`host`, and the hop-by-hop headers a client owns (`connection`, `transfer-encoding`, ...).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from relay.secret_box import seal, unseal
from relay.store.client import dumps, loads

MAX_HEADERS = 10
MAX_VALUE = 1024
FIELD = "headers"
# RFC 9110 token characters; 1-64 of them.
NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"
NAME = re.compile(NAME_PATTERN)
# Printable ASCII and tabs: no CR/LF (header injection), NUL or other control characters.
VALUE_PATTERN = r"^[\t\x20-\x7e]*$"
VALUE = re.compile(VALUE_PATTERN)
RESERVED_PREFIXES = ("webhook-", "content-")
RESERVED = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)


def check(headers: dict[str, str]) -> dict[str, str]:
    """The headers as given, or a ValueError whose message names the offending header."""
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        lower = name.lower()
        if not NAME.match(name):
            raise ValueError(f"{name!r} is not a header name (1-64 token characters)")
        if lower in RESERVED or lower.startswith(RESERVED_PREFIXES):
            raise ValueError(
                f"{name!r} is reserved (webhook-*, content-*, host and hop-by-hop headers are "
                "the relay's own)"
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE or not VALUE.match(value):
            raise ValueError(
                f"the value of {name!r} must be printable ASCII, at most {MAX_VALUE} characters, "
                "without CR or LF"
            )
    return headers


def _caseless(text: str) -> str:
    # names are letters and "-" (no escaping needed; "\\-" is not valid in every regex dialect)
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


def json_schema() -> dict[str, Any]:
    """The rules above as JSON Schema, for /openapi.json (so generated clients and schemathesis
    know them): token names that are not reserved (any case), printable ASCII values."""
    reserved = [f"^{_caseless(p)}" for p in RESERVED_PREFIXES]
    reserved += [f"^{_caseless(n)}$" for n in sorted(RESERVED)]
    return {
        "propertyNames": {
            "pattern": NAME_PATTERN,
            "not": {"anyOf": [{"pattern": p} for p in reserved]},
        },
        "additionalProperties": {
            "type": "string",
            "maxLength": MAX_VALUE,
            "pattern": VALUE_PATTERN,
        },
    }


def sealed(headers: dict[str, str], key: str | None) -> str:
    """What the subscription hash stores: name → sealed value, as JSON."""
    return dumps({name: seal(value, key) for name, value in headers.items()})


def names(stored: str | None) -> list[str]:
    return sorted(loads(stored, {}))


@lru_cache(maxsize=1024)
def unsealed(stored: str, key: str | None) -> tuple[tuple[str, str], ...]:
    """The headers to send (cached per stored form: a delivery decrypts nothing new)."""
    return tuple((name, unseal(value, key)) for name, value in loads(stored, {}).items())
