"""docs/getting-started.md, pasted in order into one shell, against a real `relay dev`.

The test starts `relay dev` (embedded Valkey, api, worker, both vendor simulators, the demo
receiver) in a directory of its own, as a newcomer runs `./run dev`, then types every `sh` block
of the walkthrough into one bash session (with `set -eo pipefail`, so a failing command or a
`curl --fail-with-body` on a 4xx/5xx ends it), only the ports swapped for free ones. After each
block it checks what the block was for through the API, the receiver's log and the shell's
variables. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.markdown import Block, code_blocks
from tests.support.servers import REPO, free_port
from tests.support.stack import wait_for

DOC = REPO / "docs" / "getting-started.md"
CITEDY_PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]
AUTOPOSTING_PATH = ["queued", "running", "completed"]
DONE = "__walkthrough_block_done__"


class Shell:
    """One bash session fed block after block, like a terminal a reader pastes into."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send("set -eo pipefail")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, script: str, timeout: float = 60.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(script.rstrip("\n") + f"\nprintf '\\n%s\\n' {DONE}\n")
        self.proc.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"the block did not finish in {timeout}s; output so far:\n{''.join(out)}"
                ) from None
            if line is None:
                raise AssertionError(f"the shell exited (a command failed):\n{''.join(out)}")
            if line.strip() == DONE:
                return "".join(out)
            out.append(line)

    def var(self, name: str) -> str:
        return self.send(f"printf '%s\\n' \"${name}\"").strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Dev:
    home: Path
    api: str
    sim: str
    key: str
    receiver_port: int


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """`relay dev` as `./run dev` runs it, in a directory that looks like the repository's root
    to the walkthrough (its `examples/` and `.venv/`), so `.relay-data/` is the test's own."""
    home = tmp_path_factory.mktemp("walkthrough")
    (home / "examples").symlink_to(REPO / "examples")
    (home / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("RELAY_")}
    env.update(
        RELAY_WORKER_METRICS_PORT="0",  # other relays may run on this machine
        RELAY_WATCH_INTERVAL="2",  # the walkthrough waits for a listing; 30 s by default
        RELAY_LOG_FORMAT="json",
    )
    log = home / "relay-dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "dev", "--port", str(free_port())],
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        banner = wait_for(
            lambda: "run relay is up" in (text := log.read_text(errors="replace")) and text,
            timeout=60,
            what="relay dev's banner",
        )
        api = re.search(r"^\s+api\s+(http://127\.0\.0\.1:\d+)", banner, re.M)
        sim = re.search(r"^\s+vendor simulator\s+(http://127\.0\.0\.1:\d+)", banner, re.M)
        assert api and sim, banner
        key = (home / ".relay-data" / "dev-api-key").read_text().strip()
        yield Dev(home, api.group(1), sim.group(1), key, free_port())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_blocks() -> list[Block]:
    blocks = [b for b in code_blocks(DOC) if b.lang == "sh" and b.tag != "not-run"]
    assert blocks, "the walkthrough has no sh blocks"
    return blocks


def localise(block: Block, d: Dev) -> str:
    """The block with the documented ports swapped for the test's free ones."""
    text = block.text
    swaps = {
        "http://127.0.0.1:8000": d.api,
        "http://127.0.0.1:8100": d.sim,
        "PORT=8080": f"PORT={d.receiver_port}",
    }
    for documented, actual in swaps.items():
        text = text.replace(documented, actual)
    return text


def receiver_lines(d: Dev, run_id: str) -> list[tuple[str, int]]:
    """(status, sequence) of each event the example receiver printed for `run_id`."""
    path = d.home / "receiver.log"
    out = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) == 5 and parts[0] == "run.status_changed" and parts[1] == run_id:
            out.append((parts[2], int(parts[4])))
    return out


def test_the_walkthrough_works_when_pasted_in_order(dev: Dev) -> None:
    d = dev
    api = httpx.Client(base_url=d.api, headers={"authorization": f"Bearer {d.key}"}, timeout=10)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(d.home),
        "LANG": "C.UTF-8",
        # the receiver's `pip install` finds standardwebhooks installed; never go to an index
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    shell = Shell(d.home, env)
    state: dict[str, Any] = {}

    def delivered(run_id: str, path: list[str]) -> list[str]:
        """Waits for the receiver to have processed the run's last status; checks it got the
        run's events once each, in order, as the relay recorded them. (A poll may miss a
        status that lasts less than its interval: only the path's order is certain.)"""
        wait_for(
            lambda: path[-1] in [s for s, _ in receiver_lines(d, run_id)],
            timeout=60,
            what=f"the receiver's {path[-1]} event of {run_id}",
        )
        got = receiver_lines(d, run_id)
        statuses = [s for s, _ in got]
        assert [n for _, n in got] == list(range(1, len(got) + 1)), got
        assert statuses == [s for s in path if s in statuses], got
        recorded = [e["status"] for e in api.get(f"/v1/runs/{run_id}").json()["events"]]
        assert recorded == statuses
        return statuses

    def setup(out: str) -> None:
        assert shell.var("KEY") == d.key
        assert json.loads(out)["status"] == "ready"

    def subscribe(out: str) -> None:
        sub_id, secret = shell.var("SUB_ID"), shell.var("WEBHOOK_SECRET")
        assert sub_id.startswith("sub_") and secret.startswith("whsec_")
        sub = api.get(f"/v1/subscriptions/{sub_id}").json()
        assert sub["url"] == f"http://127.0.0.1:{d.receiver_port}/webhooks"  # the receiver's
        assert json.loads(out)["id"] == sub_id

    def receiver(out: str) -> None:
        pid = int(shell.var("RECEIVER_PID"))
        os.kill(pid, 0)  # alive
        state["receiver_pid"] = pid
        assert httpx.get(f"http://127.0.0.1:{d.receiver_port}/webhooks").status_code == 405

    def start(out: str) -> None:
        run_id = shell.var("RUN_ID")
        assert run_id.startswith("run_")
        assert json.loads(out)["id"] == run_id
        run = api.get(f"/v1/runs/{run_id}").json()
        assert run["provider"] == "citedy" and run["metadata"] == {"crm_lead": "42"}
        state["run_id"] = run_id

    def retry(out: str) -> None:
        body, status = out.strip().rsplit("\n", 1)
        assert status == "HTTP 200"  # the same run, not a second one
        assert json.loads(body)["id"] == state["run_id"]
        runs = api.get("/v1/runs", params={"provider": "citedy", "limit": 200}).json()["data"]
        assert [r["id"] for r in runs].count(state["run_id"]) == 1
        assert len(runs) == 1

    def completed(out: str) -> None:
        shown = json.loads(out[: out.index("\n}") + 2])
        assert shown["status"] == "completed"
        statuses = delivered(state["run_id"], CITEDY_PATH)
        assert statuses[0] == "queued"  # recorded from the start itself
        assert [e["status"] for e in shown["events"]] == statuses
        assert "run.status_changed " + state["run_id"] in out  # `cat receiver.log`
        state["run_statuses"] = statuses

    def track(out: str) -> None:
        tracked_id, upstream = shell.var("TRACKED_ID"), shell.var("UPSTREAM_ID")
        assert tracked_id.startswith("run_") and tracked_id != state["run_id"]
        run = api.get(f"/v1/runs/{tracked_id}").json()
        assert run["upstream_run_id"] == upstream
        delivered(tracked_id, CITEDY_PATH)  # polled with the relay's Citedy key: it was found
        state["tracked_id"] = tracked_id

    def watch(out: str) -> None:
        watch_id, agent = shell.var("WATCH_ID"), shell.var("AGENT_ID")
        assert api.get(f"/v1/watches/{watch_id}").json()["agent_id"] == agent
        state["watch_id"] = watch_id

    def watched_run(out: str) -> None:
        found = json.loads(out)
        assert found["agent_id"] == shell.var("AGENT_ID")
        delivered(found["id"], AUTOPOSTING_PATH)
        state["ap_run"] = found["id"]

    def track_autoposting(out: str) -> None:
        body, status = out.strip().rsplit("\n", 1)
        assert status == "HTTP 200"
        assert json.loads(body)["id"] == state["ap_run"]

    def pull(out: str) -> None:
        items = [json.loads(line) for line in out.splitlines() if line.strip()]
        mine = [i for i in items if i["run"] == state["run_id"]]
        assert [(i["status"], i["sequence"]) for i in mine] == [
            (s, n + 1) for n, s in enumerate(state["run_statuses"])
        ]
        assert {i["run"] for i in items} >= {state["tracked_id"], state["ap_run"]}
        assert shell.var("CURSOR")

    def pull_wait(out: str) -> None:
        page = json.loads(out)
        assert page["events"] == 0  # nothing newer: it waited, then answered
        assert page["next_cursor"] == shell.var("CURSOR")

    def clean_up(out: str) -> None:
        wait_for(lambda: not _alive(state["receiver_pid"]), what="the receiver stopped")
        assert api.get(f"/v1/watches/{state['watch_id']}").status_code == 404
        assert api.get(f"/v1/subscriptions/{shell.var('SUB_ID')}").status_code == 404

    checks: list[tuple[str, Callable[[str], None]]] = [
        ("dev-api-key", setup),
        ("/v1/subscriptions", subscribe),
        ("examples/receiver.py", receiver),
        ("RUN=$(", start),
        ("HTTP %{http_code}", retry),
        ("cat receiver.log", completed),
        ("citedy-warm-lead", track),
        ("/v1/watches", watch),
        ("_sim/autoposting/agents", watched_run),
        ('\\"autoposting\\", \\"agent_id', track_autoposting),
        ("v1/events?limit=200", pull),
        ("wait=5", pull_wait),
        ("kill $RECEIVER_PID", clean_up),
    ]
    blocks = run_blocks()
    assert len(blocks) == len(checks), [b.line for b in blocks]
    try:
        for block, (marker, check) in zip(blocks, checks, strict=True):
            assert marker in block.text, f"{DOC.name}:{block.line}: expected {marker!r}"
            out = shell.send(localise(block, d), timeout=120)
            try:
                check(out)
            except AssertionError as exc:
                raise AssertionError(f"{DOC.name}:{block.line}: {exc}\noutput:\n{out}") from exc
    finally:
        shell.close()
        api.close()
        pid = state.get("receiver_pid")
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by the shell) counts as stopped
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_the_walkthrough_needs_only_these_tools() -> None:
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"{tool} is needed to run the walkthrough"


def test_the_banner_curl_starts_a_run_once_with_an_idempotency_key(dev: Dev) -> None:
    """`relay dev`'s ready `curl` sends an Idempotency-Key: pasted twice (a retry after a lost
    answer), it starts one run, answered 202 then 200 with the same id."""
    banner = (dev.home / "relay-dev.log").read_text(errors="replace")
    lines = [line.strip() for line in banner.splitlines() if line.strip().startswith("curl ")]
    assert len(lines) == 1, banner
    curl = lines[0]
    assert "Idempotency-Key: " in curl
    answers = []
    for _ in range(2):
        done = subprocess.run(
            ["bash", "-c", curl + " -w '\\n%{http_code}'"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        body, _, code = done.stdout.rpartition("\n")
        answers.append((int(code), json.loads(body)["id"]))
    assert [code for code, _ in answers] == [202, 200]
    assert answers[0][1] == answers[1][1]
