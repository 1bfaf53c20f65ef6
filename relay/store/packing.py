"""Compressed text in Redis, where it pays: event bodies and vendor snapshots are JSON of up to
tens of KB (a Citedy result with contacts, drafts and signals), which zlib shrinks several times.

Stored form: `b:` + base64(zlib(text)). The client decodes replies as UTF-8, so the bytes are
kept printable. Base64 rather than base85: it costs 33 % over raw where base85 costs 25 %, but
CPython decodes it in C in under a microsecond for a 1 KiB body where `b85decode`, written in
Python, took ~19 µs, and every delivery attempt reads its body again (bench/delivery.py: b85
decoding was 7 % of a worker's CPU). Values written before (`z:` + base85) read unchanged.
Small texts, and any text that would not shrink, are stored as they are. A stored JSON text
never starts with `b:` or `z:`, so `unpack` tells the forms apart.
"""

from __future__ import annotations

import base64
import binascii
import zlib

PREFIX = "b:"
#: The earlier form (base85), still read.
PREFIX_B85 = "z:"
#: Below this many characters compression does not pay for its CPU and its header.
MIN_CHARS = 512


def pack(text: str) -> str:
    if len(text) < MIN_CHARS:
        return text
    packed = PREFIX + binascii.b2a_base64(zlib.compress(text.encode(), 6), newline=False).decode()
    return packed if len(packed) < len(text) else text


def unpack(stored: str) -> str:
    if stored.startswith(PREFIX):
        return zlib.decompress(binascii.a2b_base64(stored[len(PREFIX) :])).decode()
    if stored.startswith(PREFIX_B85):
        return zlib.decompress(base64.b85decode(stored[len(PREFIX_B85) :])).decode()
    return stored
