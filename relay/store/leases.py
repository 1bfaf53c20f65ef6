"""What a worker holds while it runs a job: one member of a due set, under a lease whose
deadline and token come from Redis (see lua/claim.lua), and the calls that let it go."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import redis.asyncio as aioredis

from relay.store import keys
from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind


@dataclass(frozen=True)
class Lease:
    """`token` is empty for a job run by hand (not claimed): the scripts then skip the check.
    `claimed_at` is the server time of the claim, the observation time of what the job reads.
    `run`: the member's run hash as the claim read it (`claim_or_next` with `runs`; empty: the run
    is gone), None when the claim did not read it. `ahead`: the pump's `prepare` step's."""

    due: str
    member: str
    token: str = ""
    claimed_at: float = 0.0
    fails: int = 0
    run: dict[str, str] | None = field(default=None, compare=False, hash=False, repr=False)
    #: What the pump prepared for the job between the claim and its start (a poll or a start:
    #: its send slot, workers/ahead.py); None when nothing was.
    ahead: Any = field(default=None, compare=False, hash=False, repr=False)

    @property
    def leases(self) -> str:
        return keys.leases(self.due)


def unheld(due: str, member: str) -> Lease:
    return Lease(due, member)


async def claim(r: aioredis.Redis, due: str, lease_seconds: float, limit: int) -> list[Lease]:
    return (await claim_or_next(r, due, lease_seconds, limit))[0]


async def claim_or_next(
    r: aioredis.Redis,
    due: str,
    lease_seconds: float,
    limit: int,
    runs: bool = False,
    pipe: AutoPipeline | None = None,
) -> tuple[list[Lease], float | None, float]:
    """Up to `limit` due members under a lease; when none was due, also when the next one is
    (None: the set is empty), and the server time of the claim, for the pump's nap. With `runs`
    (members are run ids), each lease carries its run hash as read in the claim (`Lease.run`).
    With `pipe`, the claim goes out with the jobs' commands of the same turn (bench/polling.py:
    a claim a poll, at a few hundred polls a second, was a pooled round trip of its own)."""
    script_keys = [due, keys.leases(due)]
    args = [lease_seconds, limit, "1" if runs else ""]
    if pipe is not None:
        raw = await run_script(pipe, bind(pipe.redis).claim, script_keys, args)
    else:
        raw = await bind(r).claim(keys=script_keys, args=args)
    at = float(raw[0])
    following = float(raw[1]) if raw[1] else None
    rest = raw[2:]
    if not runs:
        step = range(0, len(rest), 3)
        return [Lease(due, rest[i], rest[i + 1], at, int(rest[i + 2])) for i in step], following, at
    held = []
    for i in range(0, len(rest), 4):
        flat = rest[i + 3]
        run = dict(zip(flat[::2], flat[1::2], strict=True))
        held.append(Lease(due, rest[i], rest[i + 1], at, int(rest[i + 2]), run))
    return held, following, at


async def nap(r: aioredis.Redis, due: str, seconds: float) -> None:
    """Wait up to `seconds` for a nudge (a member of `due` made due now by a script)."""
    await r.blpop([keys.nudge(due)], timeout=seconds)  # type: ignore[arg-type]


async def release(
    pipe: AutoPipeline,
    lease: Lease,
    delay: float | None,
    *,
    run_key: str = "",
    observed: bool = False,
    **fields: str,
) -> int:
    """Reschedule the member `delay` seconds from now (server time), or remove it (None), with
    `fields` written to `run_key` in the same step. Returns 0 if the lease was lost (nothing was
    written), -1 if `observed` and a newer observation was recorded meanwhile (the run unchanged).
    """
    args = [
        lease.member,
        lease.token,
        "" if delay is None else repr(max(delay, 0.0)),
        repr(lease.claimed_at) if observed else "",
        *chain.from_iterable(fields.items()),
    ]
    script = bind(pipe.redis).release
    return int(await run_script(pipe, script, [lease.due, lease.leases, run_key], args))


async def fail(
    r: aioredis.Redis, lease: Lease, *, limit: int, error: str, run_key: str, keep: float
) -> int:
    """Count a failed job of a held member; at `limit` it is set aside (see lua/fail.lua)."""
    return int(
        await bind(r).fail(
            keys=[lease.due, lease.leases, keys.poison(lease.due), run_key],
            args=[lease.member, lease.token, limit, error, keep],
        )
    )


async def bump(pipe: AutoPipeline, lease: Lease, record_key: str, field: str) -> int | None:
    """Add one to `field` of the held member's record; None when the lease was lost, or the
    record is gone (the member is then released): the job stops, writing nothing more (see
    lua/bump.lua)."""
    script = bind(pipe.redis).bump
    found = await run_script(
        pipe, script, [lease.leases, record_key, lease.due], [lease.member, lease.token, field]
    )
    return None if found is None else int(found)


async def leased_run(pipe: AutoPipeline, lease: Lease) -> dict[str, str] | None:
    """The run a lease of the start or poll pump holds (its member is the run id): as its claim
    read it (`claim_or_next` with `runs`), or, for a job run by hand, read now through the
    auto-pipeline, so the reads of the runs worked together go out together. None: gone."""
    found = lease.run
    if found is None:
        (found,) = await pipe.execute(("HGETALL", keys.run(lease.member)))
    return found or None


def record_key(member: str) -> str:
    """The record that carries a due-set member's `job_error` when it is set aside: its run (a
    run id, or `sub|run` for a delivery lane) or its watch; '' for none."""
    owner = member.rpartition("|")[2]
    if owner.startswith("run_"):
        return keys.run(owner)
    if owner.startswith("wch_"):
        return keys.watch(owner)
    return ""


async def put_back(r: aioredis.Redis, due: str, member: str) -> bool:
    """Put a member set aside after repeated failures back on its schedule, due now; False if it
    was not set aside (see lua/put_back.lua)."""
    done = await bind(r).put_back(
        keys=[due, keys.poison(due), keys.leases(due), record_key(member)], args=[member]
    )
    return bool(done)
