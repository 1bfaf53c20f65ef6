"""docs/operations.md against the code: its metrics table lists every `relay_*` series the code
defines (relay/ and workers/, found by reading the source), with the right type, and nothing
else."""

from __future__ import annotations

import re

from tests.support.metric_names import defined
from tests.support.servers import REPO

DOC = REPO / "docs" / "operations.md"


def table() -> dict[str, str]:
    """series → type, from the rows of the metrics table."""
    text = DOC.read_text()
    section = text[text.index("## Metrics") : text.index("## Alerts")]
    rows = re.findall(r"^\| `(relay_[a-z_]+)` \| ([a-z]+) \|", section, re.M)
    assert len(rows) == len({name for name, _ in rows}), "a series is listed twice"
    return dict(rows)


def test_every_series_in_the_code_is_in_the_table() -> None:
    code = defined()
    assert len(code) >= 25, code  # the scan found the metrics (it can fail)
    documented = table()
    missing = sorted(set(code) - set(documented))
    assert missing == [], f"docs/operations.md lacks {missing}"
    unknown = sorted(set(documented) - set(code))
    assert unknown == [], f"docs/operations.md lists series the code does not define: {unknown}"
    wrong = {n: (documented[n], k) for n, k in code.items() if documented[n] != k}
    assert wrong == {}, f"types differ (doc, code): {wrong}"


def test_the_runbooks_name_commands_that_exist() -> None:
    text = DOC.read_text()
    cli = (REPO / "relay" / "cli.py").read_text() if (REPO / "relay" / "cli.py").exists() else ""
    commands = set(re.findall(r"`relay ([a-z-]+)", text)) | set(
        re.findall(r"-- relay ([a-z-]+)", text)
    )
    assert {"reencrypt", "keys", "erase-tenant"} <= commands
    sources = cli or "\n".join(p.read_text() for p in (REPO / "relay").rglob("*.py"))
    for command in commands:
        assert f'"{command}"' in sources, f"`relay {command}` is not a command"
