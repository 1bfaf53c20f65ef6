"""A worker's short-lived copy of which vendor client serves each (tenant, vendor), so a poll does
not read the tenant's connection from Redis every time (relay/vendors/connections.py
`provider_for`; bench/polling.py: an HGET and a TenantVendor per poll were a round trip of every
vendor request).

An entry is kept TTL seconds from its read, so a connection put, rotated or deleted applies to
the runs in flight within TTL, not at their very next call: a call made meanwhile uses the key
read before (as a call already in flight does without the copy). A call the vendor refuses for
its credentials (401/403), or answers 404 (the run may be another account's), drops the pair's
entry (`forget`), so the call after it reads the connection again whatever the TTL. Bounded:
at most MAX_ENTRIES pairs, expired ones dropped first, then the oldest."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

#: How long a read serves: a connection changed through the API reaches the workers within this.
TTL = 1.0
MAX_ENTRIES = 4096

V = TypeVar("V")


class VendorCache(Generic[V]):
    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[tuple[str, str], tuple[float, V]] = {}

    def get(self, tenant: str, provider: str) -> V | None:
        held = self._entries.get((tenant, provider))
        if held is None:
            return None
        if time.monotonic() >= held[0]:
            del self._entries[(tenant, provider)]
            return None
        return held[1]

    def put(self, tenant: str, provider: str, value: V) -> None:
        now = time.monotonic()
        entries = self._entries
        if len(entries) >= self._max:
            for pair in [p for p, (until, _) in entries.items() if until <= now]:
                del entries[pair]
            while len(entries) >= self._max:
                del entries[next(iter(entries))]
        entries.pop((tenant, provider), None)  # re-inserted last: the oldest go first
        entries[(tenant, provider)] = (now + self._ttl, value)

    def forget(self, tenant: str, provider: str) -> None:
        self._entries.pop((tenant, provider), None)
