"""What every job needs, built once per worker process and passed explicitly."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import httpx
import redis.asyncio as aioredis

from relay.config import Settings
from relay.delivery.http_client import make_client
from relay.store.autopipe import AutoPipeline
from relay.vendors.base import Provider
from relay.vendors.connections import TenantVendor
from relay.vendors.phase_book import PhaseBook
from relay.vendors.registry import build_providers
from relay.vendors.vendor_cache import VendorCache


@dataclass
class Context:
    redis: aioredis.Redis
    settings: Settings
    providers: dict[str, Provider]
    vendor_http: httpx.AsyncClient
    deliver_http: httpx.AsyncClient
    pipe: AutoPipeline
    in_flight: Counter[str] = field(default_factory=Counter)
    #: The learned phase lengths, read every few seconds (relay/vendors/phase_book.py).
    phases: PhaseBook = field(default_factory=PhaseBook)
    #: The vendor client of each (tenant, vendor) the polls read last (vendor_cache.TTL).
    vendors: VendorCache[TenantVendor] = field(default_factory=VendorCache)

    async def aclose(self) -> None:
        await self.vendor_http.aclose()
        await self.deliver_http.aclose()
        await self.pipe.aclose()


def build_context(r: aioredis.Redis, settings: Settings) -> Context:
    return Context(
        redis=r,
        settings=settings,
        providers=build_providers(settings),
        vendor_http=make_client(
            timeout=settings.vendor_timeout,
            allow_private=True,
            guard=False,
            max_connections=settings.poll_concurrency,
        ),
        deliver_http=make_client(
            timeout=settings.delivery_timeout,
            allow_private=settings.allow_private_urls,
            max_connections=settings.delivery_concurrency,
            dns_threads=settings.dns_threads,
            dns_timeout=settings.dns_timeout,
        ),
        pipe=AutoPipeline(r, own_connection=True),
    )
