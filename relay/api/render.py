"""JSON responses rendered with orjson, for the hot answer of the API (`POST /v1/runs`).

Starlette's JSONResponse renders through the stdlib encoder; orjson writes the same JSON
(compact separators, UTF-8 kept as is, keys in insertion order; the bytes differ only in a
float's negative exponent, 1e-7 for 1e-07) several times faster. Where
orjson refuses a value (an integer beyond 64 bits, which a client may put in `metadata` or
`input`) the body falls back to Starlette's own rendering, so such a value still renders as before.
One difference is kept on purpose: a NaN or infinity (possible only inside a vendor's snapshot,
since request bodies refuse them) is written as null, where the stdlib encoder fails the request
with a 500."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # not a type or range orjson writes: the stdlib's answer, as before
            return super().render(content)
