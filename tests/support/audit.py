"""Checking that a rejected request "changes nothing" in Redis, on a stack whose workers keep
working in the background.

A snapshot records every `relay:*` key with its type and a canonical form of its value (a
string's bytes, a hash's fields, a set's members, a sorted set's members and scores, a list's
or stream's entries). After a request, every key that appeared, changed or vanished must be
explained by background work:

- global bookkeeping (due-set scores of other objects, rate budgets, worker heartbeats);
- another tenant's objects;
- one of the tenant's own runs that was live before the request (in a due set: a worker may move
  it along, record its events and their deliveries, or end it), or one of the tenant's
  subscriptions that already had deliveries queued (a worker drains its lanes), or one of its
  watches that existed before (the watch worker keeps its bookkeeping in the watch's hash), or
  the tenant's usage counts while it had work in flight (only workers count usage).

Anything else that belongs to the tenant under test (or to no object at all) is a change the
request made: a new key, a changed value (a rejected PATCH that still wrote a field) or a deleted
key (a rejected DELETE that still removed something).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import redis

DUE_SETS = ("relay:due:start", "relay:due:poll", "relay:due:deliver", "relay:due:watch")
#: Run-hash fields a subscription's purge changes on its runs (workers/chores.py).
CHORE_FIELDS = frozenset({"pending", "retain_until", "subs_seen", "dlv_dead", "dlv_failing"})
#: Keys that are global bookkeeping and not tenant data: rate budgets, worker heartbeats, the
#: due sets' lease hashes and failure counts (`relay:due:<queue>:leases[:fails]`, written by every
#: claim and release), the poison sets and the retention schedule (the sweeper's).
_GLOBAL_PREFIXES = (
    "relay:budget:",
    "relay:phases:",  # learned phase lengths per vendor, fed by any tenant's polls
    "relay:workers",
    "relay:due:",
    "relay:poison:",
    "relay:retention",
    "relay:chores:",
)
#: Keys of the tenant itself (not of one object) that a worker writes while moving a live run
#: along (its index scores, its notices), so they may change only while the tenant has one.
_TENANT_LEVEL = ("relay:tenant:",)


@dataclass
class Snapshot:
    #: key -> (type, canonical value)
    values: dict[str, tuple[str, Any]]
    due: dict[str, dict[str, float]]
    dbsize: int

    @property
    def keys(self) -> set[str]:
        return set(self.values)


def _canonical(kind: str, raw: Any) -> Any:
    if kind == "hash":
        return dict(sorted(raw.items()))
    if kind in ("set",):
        return sorted(raw)
    if kind == "zset":
        return sorted((m, float(s)) for m, s in raw)
    if kind == "stream":
        return [(entry_id, dict(sorted(fields.items()))) for entry_id, fields in raw]
    return raw


def take(r: redis.Redis) -> Snapshot:
    keys = sorted(set(r.scan_iter("relay:*", count=2000)))
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = [str(k) for k in pipe.execute()]
    # Every value, the due sets included, read at one instant (MULTI/EXEC): a worker's script
    # lands wholly before the snapshot or after it. Read one by one, a start job's record could
    # land between the reads of `due:poll` and `due:start`, and its run be in neither, so the
    # event it recorded looked like the request's own (test_bad_input, seen once in CI).
    pipe = r.pipeline(transaction=True)
    for key, kind in zip(keys, kinds, strict=True):
        if kind == "string":
            pipe.get(key)
        elif kind == "hash":
            pipe.hgetall(key)
        elif kind == "set":
            pipe.smembers(key)
        elif kind == "zset":
            pipe.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            pipe.lrange(key, 0, -1)
        elif kind == "stream":
            pipe.xrange(key)
        else:
            pipe.type(key)  # "none": the key expired between SCAN and TYPE
    for name in DUE_SETS:  # whether SCAN saw them or not (one may be made meanwhile)
        pipe.zrange(name, 0, -1, withscores=True)
    raw = pipe.execute()
    values = {
        key: (kind, _canonical(kind, value))
        for key, kind, value in zip(keys, kinds, raw[: len(keys)], strict=True)
        if kind != "none"
    }
    due = {
        name: {str(m): float(s) for m, s in members}
        for name, members in zip(DUE_SETS, raw[len(keys) :], strict=True)
    }
    return Snapshot(values=values, due=due, dbsize=int(r.dbsize()))


def digest(snapshot: Snapshot, key: str) -> str:
    """A short fingerprint of one key's value, for messages."""
    blob = json.dumps(snapshot.values.get(key), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class _Owners:
    """Who owns a key, looked up in the snapshot after the request or, for objects that are gone
    now, in the one before it."""

    def __init__(self, before: Snapshot, after: Snapshot) -> None:
        self.before = before
        self.after = after

    def tenant_of(self, kind: str, object_id: str) -> str | None:
        key = f"relay:{kind}:{object_id}"
        for snap in (self.after, self.before):
            entry = snap.values.get(key)
            if entry is not None and entry[0] == "hash" and "tenant" in entry[1]:
                return str(entry[1]["tenant"])
        return None

    def run_was_live(self, run_id: str) -> bool:
        """In a due set before the request, and not stopped by it (only a DELETE stops a run; a
        worker ends one with a vendor status instead)."""
        live = run_id in self.before.due["relay:due:start"] or (
            run_id in self.before.due["relay:due:poll"]
        )
        return live and not self._stopped_now(run_id)

    def _stopped_now(self, run_id: str) -> bool:
        def state(snap: Snapshot) -> Any:
            entry = snap.values.get(f"relay:run:{run_id}")
            return entry[1].get("state") if entry and entry[0] == "hash" else None

        return state(self.after) in ("stopped", None) and state(self.before) != state(self.after)

    def sub_had_work(self, sub_id: str) -> bool:
        return f"relay:sub:{sub_id}:pairs" in self.before.values or any(
            m.partition("|")[0] == sub_id for m in self.before.due["relay:due:deliver"]
        )

    def tenant_busy(self, tenant: str) -> bool:
        """The tenant had work in flight before the request: a live run, or deliveries queued.

        A queued lane (`sub|run`) is the tenant's by its subscription or, once the subscription
        is deleted (its lanes still end: dead, then purged), by its run: a run's hash outlives
        a DELETE of the run until its retention ends, so one of the two still names the owner."""
        return any(
            self.tenant_of("run", m) == tenant
            for name in ("relay:due:start", "relay:due:poll")
            for m in self.before.due[name]
        ) or any(
            tenant in (self.tenant_of("sub", sub_id), self.tenant_of("run", run_id))
            for sub_id, _, run_id in (
                m.partition("|") for m in self.before.due["relay:due:deliver"]
            )
        )

    def stopped_lately(self, tenant: str, within: float = 30.0) -> bool:
        """One of the tenant's runs was stopped (DELETE) within `within` seconds: a start or poll
        that was in flight then still gets its vendor answer and counts its usage."""
        now = time.time()
        for key, (kind, value) in self.before.values.items():
            if kind != "hash" or not key.startswith("relay:run:") or key.count(":") != 2:
                continue
            if value.get("tenant") == tenant and value.get("state") == "stopped":
                if now - float(value.get("updated_at") or 0) < within:
                    return True
        return False

    def settled_by_a_chore(self, key: str) -> bool:
        """A chore was queued before the request (a deleted subscription's purge, workers/
        chores.py) and the run hash changed only in what the purge keeps: its count of waiting
        deliveries and its retention (lifecycle `lc_queued`, `lc_settle`)."""
        chores = self.before.values.get("relay:due:chores")
        if not chores or not chores[1]:
            return False
        old, new = self.before.values.get(key), self.after.values.get(key)
        if not (old and new and old[0] == new[0] == "hash"):
            return False
        changed = {k for k in set(old[1]) | set(new[1]) if old[1].get(k) != new[1].get(k)}
        return changed <= CHORE_FIELDS

    def explain(self, key: str) -> tuple[str | None, bool]:
        """(owning tenant, whether background work on an older object explains a change)."""
        parts = key.split(":")
        kind = parts[1] if len(parts) > 1 else ""
        value = self.after.values.get(key) or self.before.values.get(key)
        if kind == "run" and len(parts) >= 3:
            background = self.run_was_live(parts[2]) or self.settled_by_a_chore(key)
            return self.tenant_of("run", parts[2]), background
        if kind == "sub" and len(parts) >= 3:
            return self.tenant_of("sub", parts[2]), self.sub_had_work(parts[2])
        if kind == "watch" and len(parts) >= 3:
            existed = f"relay:watch:{parts[2]}" in self.before.values
            return self.tenant_of("watch", parts[2]), existed
        if kind == "upstream" and len(parts) >= 3:
            # Written by the ingress for a tracked run, or by a worker once a started run has
            # its vendor id: it names its run.
            run_id = value[1] if value and value[0] == "string" else None
            return parts[2], run_id is not None and self.run_was_live(str(run_id))
        if kind == "idem" and len(parts) >= 3:
            return parts[2], False
        if kind == "usage" and len(parts) >= 3:
            # relay:usage:{tenant}:{day}: counted only by workers, as they call the vendor and
            # deliver for the tenant's work in flight (relay/tenancy/usage.py), a job still in
            # flight for a run stopped just before included.
            return parts[2], self.tenant_busy(parts[2]) or self.stopped_lately(parts[2])
        if kind == "tenant" and len(parts) >= 3:
            return parts[2], self.tenant_busy(parts[2])
        if kind == "event" and len(parts) >= 3 and value and value[0] == "hash":
            run_id = value[1].get("run_id")
            if run_id:
                return self.tenant_of("run", run_id), self.run_was_live(run_id)
            return value[1].get("tenant"), False
        if kind in ("dlv", "lane") and len(parts) >= 4:
            sub_id = parts[3] if kind == "dlv" else parts[2]
            if kind == "lane" and self.run_was_live(parts[3]):
                return self.tenant_of("sub", sub_id), True
            return self.tenant_of("sub", sub_id), self.sub_had_work(sub_id)
        return None, False


def changes(r: redis.Redis, before: Snapshot, tenant: str) -> list[str]:
    """What appeared, changed or vanished since `before` that the tenant's own request must have
    made."""
    after = take(r)
    owners = _Owners(before, after)
    found: list[str] = []
    for key in sorted(before.keys | after.keys):
        if key in DUE_SETS or key.startswith(_GLOBAL_PREFIXES):
            continue
        old, new = before.values.get(key), after.values.get(key)
        if old == new:
            continue
        owner, background = owners.explain(key)
        if owner is not None and owner != tenant:
            continue  # another tenant's background work
        if owner == tenant and background:
            continue  # a worker moving one of the tenant's older objects along
        if old is None:
            found.append(f"new key {key}")
        elif new is None:
            found.append(f"deleted key {key}")
        elif old[0] == new[0] == "hash":
            fields = sorted(k for k in set(old[1]) | set(new[1]) if old[1].get(k) != new[1].get(k))
            found.append(f"changed key {key} (fields {', '.join(fields)})")
        else:
            found.append(f"changed key {key} ({digest(before, key)} -> {digest(after, key)})")
    for name in DUE_SETS:
        old_due, new_due = before.due[name], after.due[name]
        for member in sorted(set(old_due) | set(new_due)):
            if old_due.get(member) == new_due.get(member):
                continue
            if name == "relay:due:deliver":
                sub_id = member.partition("|")[0]
                owner = owners.tenant_of("sub", sub_id)
                background = owners.sub_had_work(sub_id) or owners.run_was_live(
                    member.partition("|")[2]
                )
            elif name == "relay:due:watch":
                owner = owners.tenant_of("watch", member)
                background = member in old_due and member in new_due  # the watch worker's turn
            else:
                owner = owners.tenant_of("run", member)
                background = owners.run_was_live(member)
            if owner is not None and owner != tenant:
                continue
            if owner == tenant and background:
                continue
            what = (
                "new member"
                if member not in old_due
                else "removed member"
                if member not in new_due
                else "rescheduled member"
            )
            found.append(f"{what} {member} of {name}")
    return found


def hashes(r: redis.Redis, *keys: str) -> dict[str, Any]:
    return {key: r.hgetall(key) for key in keys}
