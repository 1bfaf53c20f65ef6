"""The poll's copy of each tenant's vendor client (relay/vendors/vendor_cache.py): kept its TTL,
dropped on `forget`, bounded."""

from __future__ import annotations

import time

from relay.vendors.vendor_cache import VendorCache


def test_an_entry_serves_its_ttl_then_is_read_again() -> None:
    cache: VendorCache[str] = VendorCache(ttl=0.05)
    assert cache.get("t1", "citedy") is None
    cache.put("t1", "citedy", "client-a")
    assert cache.get("t1", "citedy") == "client-a"
    assert cache.get("t2", "citedy") is None
    time.sleep(0.06)
    assert cache.get("t1", "citedy") is None


def test_forget_drops_the_pair_at_once() -> None:
    cache: VendorCache[str] = VendorCache(ttl=60)
    cache.put("t1", "citedy", "client-a")
    cache.put("t1", "autoposting", "client-b")
    cache.forget("t1", "citedy")
    assert cache.get("t1", "citedy") is None
    assert cache.get("t1", "autoposting") == "client-b"


def test_bounded_the_oldest_go_first() -> None:
    cache: VendorCache[int] = VendorCache(ttl=60, max_entries=3)
    for i in range(5):
        cache.put(f"t{i}", "citedy", i)
    assert [cache.get(f"t{i}", "citedy") for i in range(5)] == [None, None, 2, 3, 4]
