"""Per run, how its deliveries stand: the counts the runs list shows beside each run
("3/4 delivered, 1 dead"). A page of runs is read in three pipelined round trips."""

from __future__ import annotations

from relay.ops.deps import Deps
from relay.store import keys


async def delivery_summary(deps: Deps, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per run: how many (event, subscriber) deliveries there are, how many `succeeded`, are
    `dead`, or still pending or retrying. Three pipelined round trips for a page of runs; each
    run has a handful of events (one per status it went through), each a handful of
    subscribers (RELAY_MAX_SUBSCRIPTIONS)."""
    r = deps.redis
    if not run_ids:
        return {}
    pipe = r.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.lrange(keys.run_events(run_id), 0, EVENTS_READ - 1)
    event_lists = await pipe.execute()
    pipe = r.pipeline(transaction=False)
    owners: list[str] = []
    for run_id, evts in zip(run_ids, event_lists, strict=True):
        for evt in evts:
            owners.append(run_id)
            pipe.hmget(keys.event(evt), ["id", "subs"])
    rows = await pipe.execute() if owners else []
    pipe = r.pipeline(transaction=False)
    pairs: list[str] = []
    for run_id, row in zip(owners, rows, strict=True):
        for sub in (row[1] or "").split(","):
            if row[0] and sub:
                pairs.append(run_id)
                pipe.hget(keys.delivery(row[0], sub), "state")
    states = await pipe.execute() if pairs else []
    out = {run_id: {"total": 0, "succeeded": 0, "dead": 0, "pending": 0} for run_id in run_ids}
    for run_id, state in zip(pairs, states, strict=True):
        counts = out[run_id]
        counts["total"] += 1
        if state == "succeeded":
            counts["succeeded"] += 1
        elif state == "dead":
            counts["dead"] += 1
        else:
            counts["pending"] += 1
    return out


#: A run has one event per status it went through; this bounds what a summary reads of one.
EVENTS_READ = 50
