"""Learned phase lengths per (vendor, status), shared by every worker through one small hash per
vendor (keys.phases): the mean and mean deviation of how long a run stays in each status, fed by
the transitions the poll job sees (lua/learn_phase.lua) and read by the poll policy to aim the
next poll at the expected transition (relay/vendors/polling.py).

Where it ends: the hash holds at most PHASE_STATUSES statuses and expires PHASE_TTL after the
last phase learned; nothing else is stored."""

from __future__ import annotations

from dataclasses import dataclass

from relay.store import keys
from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind

#: Weight of a new sample: about the last ten phases count, so a vendor's change of pace is
#: followed within a few dozen runs, while one odd run moves the aim little.
WEIGHT = 0.2
#: A vendor whose runs the relay no longer polls has its figures dropped after this long.
PHASE_TTL = 7 * 86400
#: Statuses learned per vendor, at most: Citedy has 4 non-terminal ones, Autoposting's guides name
#: a few more than its enum; past this a vendor's new statuses are polled blind.
PHASE_STATUSES = 32


@dataclass(frozen=True)
class Phase:
    """How long a status lasts: mean and mean deviation, seconds."""

    mean: float
    dev: float


async def learn(pipe: AutoPipeline, provider: str, status: str, seconds: float) -> bool:
    """Feed one observed phase length of `status` (through the auto-pipeline)."""
    script = bind(pipe.redis).learn_phase
    key, args = learning(provider, status, seconds)
    return bool(await run_script(pipe, script, [key], args))


def learning(provider: str, status: str, seconds: float) -> tuple[str, list[str | float | int]]:
    """The key and ARGV of one phase learned (lua/learn_phase.lua), for a script that learns it in
    the same step as its own writes (lua/record_event.lua)."""
    return keys.phases(provider), [status, repr(seconds), WEIGHT, PHASE_TTL, PHASE_STATUSES]


async def read(pipe: AutoPipeline, provider: str) -> dict[str, Phase]:
    """Every learned phase of `provider`, by status."""
    (raw,) = await pipe.execute(("HGETALL", keys.phases(provider)))
    out: dict[str, Phase] = {}
    for name, value in (raw or {}).items():
        if name.startswith("m:") and (dev := raw.get("d:" + name[2:])) is not None:
            out[name[2:]] = Phase(float(value), float(dev))
    return out
