"""Recording what was observed: one event per (provider, upstream run, status), atomically with
the run's new state and a queued delivery for every matching subscriber."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from relay import tracing
from relay.config import get_settings
from relay.delivery import events
from relay.ids import event_id
from relay.store import keys, phases, snapshots
from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind
from relay.store.leases import Lease
from relay.store.packing import pack
from relay.store.runs import get_run
from relay.store.subscriptions import matching_subs


async def _run(auto: AutoPipeline | None, script: Any, keys: list[str], args: list[Any]) -> Any:
    if auto is not None:
        return await run_script(auto, script, keys, args)
    return await script(keys=keys, args=args)


class RunGone(Exception):
    """The run was deleted while a worker held it."""


async def record(
    r: aioredis.Redis,
    run: dict[str, str],
    *,
    event_type: str,
    status_key: str,
    now: float,
    terminal: bool,
    run_fields: dict[str, str],
    data_extra: dict[str, Any] | None = None,
    snapshot: Any = None,
    status: str | None = None,
    lease: Lease | None = None,
    next_poll: float | None = None,
    upstream: str | None = None,
    observed: bool = False,
    auto: AutoPipeline | None = None,
    learn: tuple[str, float] | None = None,
    subs_read: asyncio.Future[list[Any]] | None = None,
) -> tuple[str, str]:
    """Returns (outcome, event id): outcome 'ok' for a new event, 'dup' if it already existed
    (the run still moved: its fields and schedule are written), 'old' if a newer observation was
    recorded meanwhile, 'lost' if `lease` is no longer this worker's (nothing written).
    With `auto` (the worker's auto-pipeline) its reads and its script go out with the other
    jobs' commands, not on a pooled connection each (a poll's CPU, bench/polling.py).

    The work the transition causes is in the same script: `lease` (the due-set member this job
    holds) is released, the next poll set `next_poll` seconds from now (server time) when given,
    and the `upstream` index key pointed at the run. With `observed`, the lease's claim time is
    the observation time: an observation older than the run's last recorded one changes nothing.

    `learn` (the status that ended, its length in seconds): that phase of the run's vendor is
    learned in the same script (relay/store/phases.py), for a new event or a duplicate only.
    `subs_read`: the tenant's subscription set, its read sent by the caller with a command of its
    own (relay/store/subscriptions.py `read_ids`; a poll sends it with its slot's script, before
    the vendor's answer): a subscription made while that request was out is matched from the
    run's next transition, as one made just after the answer always was. A retry reads it again.

    `status_key` is the third value the event id derives from: the vendor status for a status
    change, or the failure type. The sequence is checked and set inside the script, so racing
    workers serialise: the loser re-reads the run and either finds its event recorded or records
    after the winner with the next sequence.
    """
    # (not `upstream`: that is the caller's de-duplication key, passed to the script as KEYS[8])
    upstream_id = run.get("upstream_run_id") or run["id"]
    evt = event_id(run["tenant"], run["provider"], upstream_id, status_key)
    started = tracing.now_ns() if tracing.ENABLED else 0
    phase_key: str
    phase_args: list[str | float | int]
    phase_key, phase_args = "", ["", "", "", "", ""]
    if learn is not None:
        phase_key, phase_args = phases.learning(run["provider"], *learn)
    for _ in range(8):
        sequence = int(run.get("sequence") or 0) + 1
        previous = run.get("status") or None
        data: dict[str, Any] = {
            "run": events.run_part(
                run,
                status=status if status is not None else previous,
                previous=previous if status is not None else None,
                terminal=terminal,
                sequence=sequence,
            )
        }
        if event_type == events.STATUS_CHANGED:
            data["upstream"] = snapshot
        if data_extra:
            data.update(data_extra)
        body = events.body(event_type, now, data)
        subs = await matching_subs(r, run, event_type, status, auto, subs_read)
        subs_read = None
        fields = {**run_fields}
        if event_type == events.STATUS_CHANGED and "snapshot" in fields:
            # Stored once: the run points at this event's body, which holds the same snapshot
            # (relay/store/snapshots.py resolves it); later polls write their own if it changes.
            fields["snapshot"] = snapshots.REF + evt
        if status is not None:
            fields.update(status=status, previous_status=previous or "")
        fields["terminal"] = "1" if terminal else "0"
        pairs: list[str] = []
        for name, value in fields.items():
            pairs += [name, value]
        script = bind(r).record_event
        outcome = await _run(
            auto,
            script,
            [
                keys.run(run["id"]),
                keys.event(evt),
                keys.run_events(run["id"]),
                keys.DUE_DELIVER,
                lease.due if lease else "",
                lease.leases if lease else "",
                keys.DUE_POLL if next_poll is not None else "",
                upstream or "",
                keys.tenant_events(run["tenant"]),
                phase_key,
            ],
            [
                evt,
                sequence,
                repr(now),
                pack(body),
                event_type,
                status_key,
                len(fields),
                len(subs),
                lease.token if lease else "",
                repr(lease.claimed_at) if lease and observed and lease.claimed_at else "",
                repr(next_poll) if next_poll is not None else "",
                run["id"],
                *phase_args,
                *pairs,
                *subs,
                get_settings().retention,
            ],
        )
        if outcome == "gone":
            raise RunGone(run["id"])
        if outcome != "stale":
            if tracing.ENABLED:  # a span of its own under the job's (relay/tracing.py)
                tracing.finished_span(
                    "relay.record",
                    started,
                    {
                        "relay.run.id": run["id"],
                        "relay.event.id": evt,
                        "relay.event.type": event_type,
                        "relay.event.status": status_key,
                        "relay.event.sequence": sequence,
                        "relay.event.subscribers": len(subs),
                        # ok (a new event), dup (seen before: no webhook), old, lost (lease)
                        "relay.record.outcome": str(outcome),
                    },
                )
            return str(outcome), evt
        fresh = await get_run(r, run["id"])
        if fresh is None:
            raise RunGone(run["id"])
        run = fresh
    raise RuntimeError("could not record the transition: the run kept changing")
