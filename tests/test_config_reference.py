"""Settings agree everywhere (issue 25): one place reads them (relay/config), the README's table is
generated from it, the chart sets only names it knows, a misspelt `RELAY_*` name is a warning
naming the closest setting (an error with RELAY_STRICT_CONFIG=true), every command but
`relay dev` needs REDIS_URL, and `relay check` reads its file and its limit from the settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay.config import known_names, unknown_names
from relay.config import reference as ref
from tests.support.servers import REPO, free_port

CHART = REPO / "helm" / "relay"
SETTING_NAME = re.compile(r"\b(?:RELAY|CITEDY|AUTOPOSTING)_[A-Z0-9_]+\b|\bREDIS_URL\b")


def test_the_readme_table_is_generated_from_the_settings() -> None:
    text = ref.README.read_text(encoding="utf-8")
    assert ref.with_table(text) == text, "run: python -m relay.config.reference"
    table = text.split(ref.START)[1].split(ref.END)[0]
    listed = re.findall(r"^\| `([A-Z0-9_]+)` \|", table, re.M)
    assert listed == known_names()
    assert set(ref.MEANINGS) == set(known_names()), "a meaning for every setting, and no other"


def test_the_table_check_sees_a_stale_row() -> None:
    text = ref.README.read_text(encoding="utf-8")
    stale = text.replace("| `RELAY_POISON_AFTER` | `5` |", "| `RELAY_POISON_AFTER` | `6` |")
    assert stale != text
    assert ref.with_table(stale) == text


def chart_names() -> dict[str, set[str]]:
    """Every setting-like name the chart sets, by file (NOTES.txt only shows a user shell
    variables of their own: RELAY_URL, RELAY_KEY)."""
    files = [CHART / "values.yaml", CHART / "values.schema.json"]
    files += [p for p in (CHART / "templates").rglob("*") if p.is_file() and p.name != "NOTES.txt"]
    return {str(p.relative_to(REPO)): set(SETTING_NAME.findall(p.read_text())) for p in files}


def test_the_chart_sets_only_settings_that_exist() -> None:
    known = set(known_names())
    found = chart_names()
    assert set().union(*found.values()) >= {"REDIS_URL", "RELAY_POISON_AFTER"}  # the scan reads
    unknown = {path: sorted(names - known) for path, names in found.items() if names - known}
    assert unknown == {}


def test_settings_are_read_in_relay_config_only() -> None:
    """No module outside relay/config reads a setting from the environment itself. Allowed: the
    crash-point harness of the tests (not a setting), `relay dev`, which composes its
    children's environment, and the tracing switch, which reads the OpenTelemetry SDK's own
    standard `OTEL_*` variables (issue 28: configured only by those, not by relay settings)."""
    allowed = {
        "relay/store/crashpoint.py",
        "relay/store/connection.py",
        "relay/devtools/dev.py",
        "relay/tracing.py",
    }
    readers = []
    for base in ("relay", "workers"):
        for path in (REPO / base).rglob("*.py"):
            rel = str(path.relative_to(REPO))
            if rel.startswith("relay/config/") or rel in allowed:
                continue
            if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text()):
                readers.append(rel)
    assert readers == []


def test_unknown_names_name_the_closest_setting() -> None:
    found = unknown_names(
        {"RELAY_POLL_MAX_INTERVALL": "5", "RELAY_RETENTION": "1", "RELAY_ZZZ_QQQ": "1", "HOME": "/"}
    )
    assert found == [
        "RELAY_POLL_MAX_INTERVALL is not a setting (did you mean RELAY_POLL_MAX_INTERVAL?)",
        "RELAY_ZZZ_QQQ is not a setting",
    ]
    assert unknown_names({"RELAY_CRASH_AFTER_WRITES": "3"}) == []


def _relay(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("RELAY_")}
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def test_a_misspelt_setting_warns_at_start_and_fails_when_strict(tmp_path: Path) -> None:
    beat = tmp_path / "hb"
    beat.write_text("x")
    env = {"RELAY_HEARTBEAT_FILE": str(beat), "RELAY_POLL_MAX_INTERVALL": "5"}
    warned = _relay("check", **env)
    assert warned.returncode == 0, warned.stderr
    assert "did you mean RELAY_POLL_MAX_INTERVAL?" in warned.stderr
    strict = _relay("check", **env, RELAY_STRICT_CONFIG="true")
    assert strict.returncode == 2
    assert "RELAY_POLL_MAX_INTERVALL is not a setting" in strict.stderr
    assert _relay("check", RELAY_HEARTBEAT_FILE=str(beat), RELAY_STRICT_CONFIG="true").stderr == ""


@pytest.mark.parametrize(
    "args", [("api", "--port", "0"), ("worker",), ("keys", "list"), ("jobs", "list")]
)
def test_commands_other_than_dev_need_redis_url(args: tuple[str, ...]) -> None:
    if args[0] == "api":
        args = ("api", "--port", str(free_port()))
    started = time.monotonic()
    done = _relay(*args, RELAY_ADMIN_KEY="admin-key-0123456789abcdef")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "REDIS_URL is not set" in done.stderr and f"relay {args[0]}" in done.stderr
    assert time.monotonic() - started < 20  # at once, not after a connection timeout


def test_relay_check_reads_its_file_and_limit_from_the_settings(tmp_path: Path) -> None:
    beat = tmp_path / "worker.heartbeat"
    assert _relay("check", RELAY_HEARTBEAT_FILE=str(beat)).returncode == 1  # no file
    beat.write_text("x")
    old = time.time() - 45
    os.utime(beat, (old, old))
    assert _relay("check", RELAY_HEARTBEAT_FILE=str(beat)).returncode == 1  # 30 s by default
    longer = _relay("check", RELAY_HEARTBEAT_FILE=str(beat), RELAY_CHECK_MAX_AGE="60")
    assert longer.returncode == 0, longer.stdout


def test_a_secret_file_name_is_no_unknown_setting() -> None:
    """`RELAY_ENCRYPTION_KEY_FILE` and the like (how the chart passes secrets) are read on
    purpose: no warning; a misspelt one still is."""
    from relay.config import unknown_names

    assert unknown_names({"RELAY_ENCRYPTION_KEY_FILE": "/x", "RELAY_ADMIN_KEY_FILE": "/y"}) == []
    assert unknown_names({"RELAY_ENCRYPTION_KEYS_FILE": "/x"})
