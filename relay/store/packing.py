"""Compressed text in Redis, where it pays: event bodies and vendor snapshots are JSON of up to
tens of KB (a Citedy result with contacts, drafts and signals), which zlib shrinks several times.

Stored form: `z:` + base85(zlib(text)). The client decodes replies as UTF-8, so the bytes are
kept printable; base85 costs 25 % over raw, still far below the JSON. Small texts, and any text
that would not shrink, are stored as they are. A stored JSON text never starts with `z:`, so
`unpack` tells the two apart and old (plain) values read unchanged.
"""

from __future__ import annotations

import base64
import zlib

PREFIX = "z:"
#: Below this many characters compression does not pay for its CPU and its header.
MIN_CHARS = 512


def pack(text: str) -> str:
    if len(text) < MIN_CHARS:
        return text
    packed = PREFIX + base64.b85encode(zlib.compress(text.encode(), 6)).decode("ascii")
    return packed if len(packed) < len(text) else text


def unpack(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored
    return zlib.decompress(base64.b85decode(stored[len(PREFIX) :])).decode()
