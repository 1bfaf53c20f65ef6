"""`POST /v1/runs` answers through orjson (relay/api/render.py): the same JSON as Starlette's
JSONResponse for every value a run can hold, including what orjson itself refuses; the same
bytes too, but for a float's negative exponent (orjson writes 1e-7, the stdlib 1e-07)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.responses import JSONResponse

from relay.api.render import FastJSON

RUN: dict[str, Any] = {
    "id": "run_0123456789abcdef01234567",
    "provider": "citedy",
    "agent_id": None,
    "terminal": False,
    "sequence": 0,
    "metadata": {"crm": "é✓ \u2028 \"quoted\" \\ </script>", "nested": [1, 2.5, {"b": None}]},
    "created_at": 1764942000.123456,
    "upstream": None,
}


@pytest.mark.parametrize(
    "content",
    [
        RUN,
        {**RUN, "metadata": {"big": 2**70, "neg": -(2**64)}},  # beyond orjson's 64 bits
        {"huge": 1e300, "zero": -0.0, "empty": {}, "list": []},
    ],
)
def test_same_bytes_as_starlette(content: dict[str, Any]) -> None:
    assert FastJSON(content, status_code=202).body == JSONResponse(content, status_code=202).body


def test_same_json_for_small_exponents() -> None:
    content = {"tiny": 1e-7, "least": 5e-324}
    ours, theirs = FastJSON(content).body, JSONResponse(content).body
    assert json.loads(ours) == json.loads(theirs) == content
