"""Checking that a rejected request "changes nothing" in Redis, on a stack whose workers keep
working in the background.

A snapshot records every `relay:*` key and the members of the due sets. After a request, every
new key and every new due member must be explained by background work: it belongs to an object
(run, subscription, watch) that already existed, or to another tenant than the one under test.
Anything new that belongs to the tenant under test (or to no object at all) is a change the
request made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

DUE_SETS = ("relay:due:start", "relay:due:poll", "relay:due:deliver", "relay:due:watch")
#: Keys that are global bookkeeping (rate budgets, worker heartbeats) and not tenant data.
_GLOBAL_PREFIXES = ("relay:due:", "relay:budget:", "relay:workers")


@dataclass
class Snapshot:
    keys: set[str]
    due: dict[str, set[str]]
    dbsize: int


def take(r: redis.Redis) -> Snapshot:
    keys = set(r.scan_iter("relay:*", count=2000))
    due = {name: set(r.zrange(name, 0, -1)) for name in DUE_SETS}
    return Snapshot(keys=keys, due=due, dbsize=int(r.dbsize()))


def _tenant_of_object(r: redis.Redis, kind: str, object_id: str) -> str | None:
    value = r.hget(f"relay:{kind}:{object_id}", "tenant")
    return str(value) if value is not None else None


def _explain(r: redis.Redis, before: Snapshot, key: str) -> tuple[str | None, bool]:
    """(owning tenant, whether its object existed before) for one new key."""
    parts = key.split(":")
    kind = parts[1] if len(parts) > 1 else ""
    if kind in ("run", "sub", "watch") and len(parts) >= 3:
        existed = f"relay:{kind}:{parts[2]}" in before.keys
        return _tenant_of_object(r, kind, parts[2]), existed
    if kind == "upstream" and len(parts) >= 3:
        # Written by the ingress for a tracked run, or by a worker once a started run has its
        # vendor id: it names its run.
        run_id = r.get(key)
        existed = run_id is not None and f"relay:run:{run_id}" in before.keys
        return parts[2], existed
    if kind == "tenant" and len(parts) == 4 and parts[3] == "events":
        # The tenant's pull log (relay/pull.py), made by a worker recording an event: explained
        # when its newest entry is an event of a run that existed before.
        newest = r.xrevrange(key, count=1)
        event_id = newest[0][1].get("e") if newest else None
        run_id = r.hget(f"relay:event:{event_id}", "run_id") if event_id else None
        return parts[2], bool(run_id) and f"relay:run:{run_id}" in before.keys
    if kind in ("idem", "tenant") and len(parts) >= 3:
        return parts[2], False
    if kind == "event" and len(parts) >= 3:
        event = r.hgetall(key)
        run_id = event.get("run_id")
        if run_id:
            return _tenant_of_object(r, "run", run_id), f"relay:run:{run_id}" in before.keys
        return event.get("tenant"), False
    if kind in ("dlv", "lane") and len(parts) >= 4:
        sub_id = parts[3] if kind == "dlv" else parts[2]
        return _tenant_of_object(r, "sub", sub_id), f"relay:sub:{sub_id}" in before.keys
    return None, False


def changes(r: redis.Redis, before: Snapshot, tenant: str) -> list[str]:
    """What appeared since `before` that the tenant's own request must have made."""
    after = take(r)
    found: list[str] = []
    for key in sorted(after.keys - before.keys):
        if key.startswith(_GLOBAL_PREFIXES):
            continue
        owner, existed = _explain(r, before, key)
        if owner == tenant and existed:
            continue  # a worker moving one of the tenant's older objects along
        if owner is not None and owner != tenant:
            continue  # another tenant's background work
        found.append(f"new key {key}")
    for name in ("relay:due:start", "relay:due:poll", "relay:due:watch"):
        kind = "watch" if name.endswith("watch") else "run"
        for member in sorted(after.due[name] - before.due[name]):
            if f"relay:{kind}:{member}" in before.keys:
                continue
            owner = _tenant_of_object(r, kind, member)
            if owner is not None and owner != tenant:
                continue
            found.append(f"new member {member} of {name}")
    for member in sorted(after.due["relay:due:deliver"] - before.due["relay:due:deliver"]):
        sub_id = member.partition("|")[0]
        owner = _tenant_of_object(r, "sub", sub_id)
        if owner is not None and owner != tenant:
            continue
        if owner == tenant and f"relay:sub:{sub_id}:pairs" in before.keys:
            continue  # a lane that already had work, rescheduled by a worker
        found.append(f"new member {member} of relay:due:deliver")
    return found


def hashes(r: redis.Redis, *keys: str) -> dict[str, Any]:
    return {key: r.hgetall(key) for key in keys}
