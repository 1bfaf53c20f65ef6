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
#: Below this many characters a text is stored as it is: compressing it costs more CPU than the
#: memory it saves is worth. A poll's status change with a ~0.7 KB body spent 16-27 µs in zlib
#: (py-spy: 8.7 % of a polling worker's CPU, bench/polling.py) to save ~200 bytes as stored.
#: At 2048 (PostgreSQL's TOAST starts compressing at ~2 KB too) a poll took 0.292-0.303 ms of
#: worker CPU against 0.311-0.324 at 512, alternated; a completed Citedy run with a 15 KB
#: result kept 17,246-17,899 bytes in Redis against 16,748-17,373 (bench/memory.py), as its
#: result and snapshot, where the bytes are, are still compressed.
MIN_CHARS = 2048


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
