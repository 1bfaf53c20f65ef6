"""`relay dev`: embedded Valkey, the ingress, a worker, both vendor simulators and a demo
receiver, wired together, with a ready `curl` printed. State lives in `.relay-data/`, so a restart
keeps runs, subscriptions and pending deliveries; Ctrl-C stops every child."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from relay.config import ConfigError, load_settings


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url}")


def _dev_key(data: Path) -> str:
    path = data / "dev-api-key"
    if not path.exists():
        path.write_text("rk_dev_" + secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _demo_subscription(api: str, key: str, receiver: str, data: Path) -> str:
    """Create (once) the subscription that sends every event to the demo receiver; its secret goes
    to the file the receiver verifies with."""
    state = data / "demo-subscription.json"
    headers = {"authorization": f"Bearer {key}"}
    if state.exists():
        sub_id = json.loads(state.read_text())["id"]
        if httpx.get(f"{api}/v1/subscriptions/{sub_id}", headers=headers).status_code == 200:
            return str(sub_id)
    response = httpx.post(
        f"{api}/v1/subscriptions",
        headers=headers,
        json={"url": receiver, "description": "relay dev demo receiver"},
    )
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    (data / "demo-secret").write_text(created["secret"])
    (data / "demo-secret").chmod(0o600)
    state.write_text(json.dumps({"id": created["id"]}))
    return str(created["id"])


def run_dev(port: int = 8000, fresh: bool = False) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    data = settings.data_dir.resolve()
    if fresh and data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    valkey = None
    redis_url = settings.redis_url
    if not redis_url:
        from relay.store.connection import start_embedded

        valkey = start_embedded(data / "valkey")
        redis_url = valkey.connection_url
    key = _dev_key(data)
    api_port, sim_port, recv_port = _port(port), _port(port + 100), _port(port + 200)
    api = f"http://127.0.0.1:{api_port}"
    sim = f"http://127.0.0.1:{sim_port}"
    receiver = f"http://127.0.0.1:{recv_port}/webhooks"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "RELAY_API_KEYS": f"dev:{key}",
        "CITEDY_BASE_URL": os.environ.get("CITEDY_BASE_URL", sim),
        "CITEDY_API_KEY": os.environ.get("CITEDY_API_KEY", "citedy_agent_dev_" + key[-12:]),
        "AUTOPOSTING_BASE_URL": os.environ.get("AUTOPOSTING_BASE_URL", sim + "/autoposting"),
        "AUTOPOSTING_API_KEY": os.environ.get("AUTOPOSTING_API_KEY", "sk-social-dev-" + key[-12:]),
        "RELAY_ALLOW_PRIVATE_URLS": os.environ.get("RELAY_ALLOW_PRIVATE_URLS", "true"),
        "RELAY_LOG_FORMAT": os.environ.get("RELAY_LOG_FORMAT", "console"),
        "RELAY_POLL_MIN_INTERVAL": os.environ.get("RELAY_POLL_MIN_INTERVAL", "1"),
        "RELAY_HEARTBEAT_FILE": str(data / "worker.heartbeat"),
    }
    relay = [sys.executable, "-m", "relay.cli"]
    children: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([*relay, *args], env=env)
        children.append(proc)
        return proc

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A process manager's SIGTERM stops the children the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _wait(
            sim + "/_sim/stats", spawn("simulate", "--port", str(sim_port), "--quiet"), "simulators"
        )
        _wait(
            f"{receiver}",
            spawn(
                "demo-receiver",
                "--port",
                str(recv_port),
                "--secret-file",
                str(data / "demo-secret"),
            ),
            "demo receiver",
        )
        _wait(api + "/healthz", spawn("api", "--port", str(api_port)), "api")
        spawn("worker")
        sub_id = _demo_subscription(api, key, receiver, data)
        print(_banner(api, sim, receiver, key, sub_id, redis_url, valkey is not None), flush=True)
        while all(p.poll() is None for p in children):
            time.sleep(0.5)
        print("relay dev: a child process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"relay dev: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in children:
            try:
                proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                proc.kill()
        if valkey is not None:
            valkey.stop()


EMBEDDED_NOTE = "   (embedded Valkey, data in .relay-data/)"


def _banner(
    api: str, sim: str, receiver: str, key: str, sub_id: str, redis_url: str, embedded: bool
) -> str:
    # With an Idempotency-Key: a start answered 5xx, or never answered, may still have made (and
    # the vendor charged) the run; the same key again returns it instead of starting another.
    curl = (
        f"curl -s -X POST {api}/v1/runs -H 'authorization: Bearer {key}' "
        "-H 'content-type: application/json' "
        f"-H 'Idempotency-Key: dev-{int(time.time())}-acme' "
        '-d \'{"provider": "citedy", "input": {"domain": "acme.example"}}\''
    )
    return "\n".join(
        [
            "",
            "run relay is up",
            f"  api              {api}   (OpenAPI: {api}/openapi.json)",
            f"  console          {api}/console   (log in with the dev API key below)",
            f"  metrics          {api}/metrics   (worker: RELAY_WORKER_METRICS_PORT, default 9108)",
            f"  vendor simulator {sim}   (Citedy at /api/agent, Autoposting at /autoposting)",
            f"  demo receiver    {receiver}   (subscription {sub_id})",
            f"  redis            {redis_url}{EMBEDDED_NOTE if embedded else ''}",
            f"  dev API key      {key}",
            "",
            "start a Citedy warm-lead run; each status change is printed by the demo receiver:",
            f"  {curl}",
            "  (send an Idempotency-Key with every start: a retry with the same key and body gets",
            "  the same run back, never a second charged one; use a new key for another run)",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
    )
