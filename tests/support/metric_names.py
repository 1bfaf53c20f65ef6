"""Every `relay_*` Prometheus metric the code defines, found by reading the source (relay/ and
workers/, wherever modules move), so docs, alert rules and dashboards can be checked against it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.servers import REPO

# constructor name → kind of series (prometheus_client's classes and its collector families)
KINDS = {
    "Counter": "counter",
    "CounterMetricFamily": "counter",
    "Gauge": "gauge",
    "GaugeMetricFamily": "gauge",
    "Histogram": "histogram",
    "HistogramMetricFamily": "histogram",
    "PlainHistogram": "histogram",  # relay/metrics.py: a histogram counted in plain numbers
    "Summary": "summary",
    "SummaryMetricFamily": "summary",
    "Info": "info",
}
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


def defined() -> dict[str, str]:
    """Family name (as exposed: a counter with its `_total`) → kind."""
    found: dict[str, str] = {}
    for root in ("relay", "workers"):
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(Path(path).read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                first = node.args[0]
                if (
                    name in KINDS
                    and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and first.value.startswith("relay_")
                ):
                    kind = KINDS[name]
                    family = first.value
                    if kind == "counter" and not family.endswith("_total"):
                        family += "_total"
                    found[family] = kind
    return found


def series_names() -> set[str]:
    """Every series name a PromQL expression may use."""
    out: set[str] = set()
    for family, kind in defined().items():
        base = family.removesuffix("_total") if kind == "counter" else family
        out |= {base + suffix for suffix in SUFFIXES[kind]}
    return out
