"""docs/values.md is generated from the chart (helm/values_reference.py): it must be what the
generator prints for the committed values.schema.json and values.yaml, and list every value."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType
from typing import Any

from tests.support.servers import REPO


def generator() -> ModuleType:
    path = REPO / "helm" / "values_reference.py"
    spec = importlib.util.spec_from_file_location("values_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaves(schema: dict[str, Any], path: str = "") -> list[str]:
    out = []
    for key, sub in schema.get("properties", {}).items():
        dotted = f"{path}.{key}" if path else key
        out += leaves(sub, dotted) if sub.get("properties") else [dotted]
    return out


def test_values_md_is_up_to_date() -> None:
    committed = (REPO / "docs" / "values.md").read_text()
    assert committed == generator().render(), (
        "docs/values.md differs from the chart: run python helm/values_reference.py"
    )


def test_values_md_lists_every_value_with_its_default() -> None:
    schema = json.loads((REPO / "helm" / "relay" / "values.schema.json").read_text())
    text = (REPO / "docs" / "values.md").read_text()
    names = leaves(schema)
    assert len(names) > 100
    for name in names:
        assert f"| `{name}` |" in text, name
    assert "| `prometheusRule.thresholds.queueAgeSeconds` | number (> 0) | `60` |" in text
    assert "| `worker.metricsPort` | integer (≥ 0, ≤ 65535) | `9108` |" in text


def test_comments_become_descriptions() -> None:
    notes = generator().comments(
        '# ---\n# Top.\nouter:\n  # The inner value.\n  # RELAY_X: "example"\n  inner: 1\n'
    )
    assert notes == {"outer": "Top.", "outer.inner": "The inner value."}
