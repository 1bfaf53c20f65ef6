"""Usage per tenant (`GET /v1/usage?since=`): what an agency bills its clients for."""

from __future__ import annotations

import math
import time
from typing import Any

from relay.ops.deps import Deps
from relay.ops.errors import Invalid
from relay.tenancy import usage


async def read(deps: Deps, tenant: str, since: str | None) -> dict[str, Any]:
    now = time.time()
    if since is None:
        start = now - 30 * 86400
    else:
        try:
            start = float(since)
        except ValueError:
            start = math.nan
        if not math.isfinite(start) or start < 0:
            raise Invalid("since", "since: must be unix seconds (a number >= 0)")
    # Counters are kept at most RELAY_USAGE_DAYS (≤ MAX_DAYS): an earlier `since` reads them all.
    start = max(start, now - usage.MAX_DAYS * 86400)
    return await usage.read(deps.redis, tenant, start, now)
