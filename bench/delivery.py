"""Delivery: end-to-end signed deliveries per second (transition recorded -> receiver 2xx) with
1, 2, ... worker processes, against the same receiver's raw capacity measured in the same run by a
bare aiohttp client loop; then the delivery lag at half of the measured maximum rate.

    .venv/bin/python bench/delivery.py [--workers 1,2] [--events 12000] [--seconds 8]
        [--subscriptions 1]

How it measures, per worker count W:
1. throughput: with no worker running, record a backlog of `--events` transitions through
   `relay.delivery.recorder.record` (the very call the poll/start jobs make: event + lane +
   schedule in one
   script) for runs of the bench tenant, then start W workers and time the receiver's 2xx count
   from 10 % to 90 % of the backlog (so worker start-up is not counted).
2. lag: with the W workers running, record transitions paced at half of the rate found in 1 for
   `--seconds`, and take lag = receiver arrival time - the event's created_at.
The receiver is a bare aiohttp server in its own process (bench/common.py) answering 204.
`--subscriptions N` subscribes N endpoints (all on that receiver), so each transition fans out to N
deliveries and `--events` counts deliveries (the shape of the issue's outside measurement: 40
subscriptions x 25 runs). "CPU us" is the worker's CPU per delivery; the bare loop's own CPU per
POST is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from common import (
    TENANT,
    Bench,
    bench,
    cpu_seconds,
    delivery_body,
    parse_counts,
    percentile,
    raw_post_stats,
    receiver_reset,
    receiver_stats,
    redis_client,
    redis_cpu,
    subscribe,
    table,
)

from relay.delivery import events
from relay.delivery.recorder import record
from relay.store.client import dumps
from relay.store.runs import TRACKING, create_run

STATUSES = ("queued", "signals_running", "contacts_running", "drafting_running")
PARKED = "bench:parked"  # a due-set no pump reads: the runs exist, nobody polls them
SNAPSHOT = {"id": "", "status": "", "domain": "bench.example", "result": None, "pad": "x" * 600}


async def make_runs(r: Any, count: int) -> list[dict[str, str]]:
    runs = []
    now = time.time()
    for _ in range(count):
        run_id = "run_" + uuid.uuid4().hex[:24]
        run = {
            "id": run_id,
            "tenant": TENANT,
            "provider": "citedy",
            "agent_id": "",
            "upstream_run_id": str(uuid.uuid4()),
            "state": TRACKING,
            "status": "",
            "sequence": "0",
            "source": "track",
            "metadata": dumps({"crm_id": run_id[-8:]}),
            "created_at": repr(now),
            "updated_at": repr(now),
            "poll_interval": "0",
        }
        runs.append(run)
    sem = asyncio.Semaphore(64)

    async def one(run: dict[str, str]) -> None:
        async with sem:
            await create_run(
                r,
                run=run,
                due_key=PARKED,
                due_at=now,
                idempotency_key=None,
                request_hash="",
                upstream_key=None,
            )

    await asyncio.gather(*(one(run) for run in runs))
    return runs


async def transition(r: Any, run: dict[str, str], status: str) -> tuple[str, float]:
    now = time.time()
    snap = {**SNAPSHOT, "id": run["upstream_run_id"], "status": status}
    outcome, evt = await record(
        r,
        run,
        event_type=events.STATUS_CHANGED,
        status_key=status,
        now=now,
        terminal=False,
        status=status,
        snapshot=snap,
        run_fields={"snapshot": dumps(snap), "last_change_at": repr(now)},
    )
    assert outcome == "ok", outcome
    run["sequence"] = str(int(run["sequence"]) + 1)
    run["previous_status"], run["status"] = run["status"], status
    return evt, now


def plan(runs: list[dict[str, str]], total: int) -> list[tuple[dict[str, str], str]]:
    """Round-robin over the runs, each walking the statuses, so one run's events are far apart
    (each (subscription, run) lane is strictly sequential by design)."""
    out = []
    for status in STATUSES:
        for run in runs:
            out.append((run, status))
            if len(out) == total:
                return out
    return out


async def backlog(r: Any, events_: int) -> dict[str, float]:
    """Record `events_` transitions (each one delivery per subscription)."""
    runs = await make_runs(r, -(-events_ // len(STATUSES)))
    work = plan(runs, events_)
    created: dict[str, float] = {}
    # one status step at a time, concurrently across runs (a run's steps stay in order)
    for status in STATUSES:
        step = [run for run, s in work if s == status]
        sem = asyncio.Semaphore(64)

        async def one(run: dict[str, str], st: str = status, sem: asyncio.Semaphore = sem) -> None:
            async with sem:
                evt, at = await transition(r, run, st)
                created[evt] = at

        await asyncio.gather(*(one(run) for run in step))
    return created


async def redis_calls(r: Any) -> dict[str, int]:
    """Commands Valkey has run so far, by name (a script's own calls counted under theirs), and
    under `usec:<name>` the microseconds Valkey spent inside them."""
    stats = await r.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    usec = {"usec:" + k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in stats.items()}
    return {**calls, **usec}


async def wait_count(url: str, target: int, timeout: float, every: float = 0.25) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = int((await receiver_stats(url, since=10**9))["count"])
        if count >= target:
            break
        await asyncio.sleep(every)
    return count


async def phase(
    b: Bench,
    r: Any,
    workers: int,
    events_: int,
    seconds: float,
    profile: bool = False,
    fanout: int = 1,
) -> dict[str, Any]:
    await receiver_reset(b.receiver_url)
    t0 = time.monotonic()
    created = await backlog(r, -(-events_ // fanout))
    record_rate = len(created) / (time.monotonic() - t0)
    procs = b.start_workers(workers, profile=profile)
    want = len(created) * fanout
    timeout = max(60.0, events_ / 200)
    # CPU is taken between 10 % and 90 % of the backlog, as the rate is: start-up is not counted.
    n0 = await wait_count(b.receiver_url, want // 10, timeout=timeout, every=0.05)
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    rcpu0 = await redis_cpu(r)
    calls0 = await redis_calls(r)
    w0 = time.monotonic()
    n1 = await wait_count(b.receiver_url, want * 9 // 10, timeout=timeout, every=0.05)
    wall = time.monotonic() - w0
    cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True))
    rcpu = await redis_cpu(r) - rcpu0
    calls = await redis_calls(r)
    per = {k: (v - calls0.get(k, 0)) / max(n1 - n0, 1) for k, v in calls.items()}
    got = await wait_count(b.receiver_url, want, timeout=timeout)
    hits = (await receiver_stats(b.receiver_url))["hits"]
    times = sorted(t for evt, t in hits if evt in created)
    lo, hi = times[len(times) // 10], times[(len(times) * 9) // 10]
    rate = (len(times) * 0.8) / max(hi - lo, 1e-6)

    # lag at half of the measured maximum
    await receiver_reset(b.receiver_url)
    target = rate / 2 / fanout  # transitions per second
    n = max(1, int(target * seconds))
    runs = await make_runs(r, -(-n // len(STATUSES)))
    work = plan(runs, n)
    sent: dict[str, float] = {}
    start = time.monotonic()
    inflight: set[asyncio.Task[None]] = set()

    async def fire(run: dict[str, str], status: str) -> None:
        evt, at = await transition(r, run, status)
        sent[evt] = at

    for i, (run, status) in enumerate(work):
        due = start + i / target
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # The injector itself is falling behind: do not pile up (and stay within the client's
        # pool of 64 connections, or transitions fail with 'Too many connections').
        if len(inflight) >= 48:
            await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(fire(run, status))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        if time.monotonic() - start > seconds * 3:
            break
    if inflight:
        await asyncio.wait(inflight, timeout=30)
    injected = len(sent) / (time.monotonic() - start)
    await wait_count(b.receiver_url, len(sent) * fanout, timeout=30)
    hits = (await receiver_stats(b.receiver_url))["hits"]
    lags = [(t - sent[evt]) * 1000 for evt, t in hits if evt in sent]
    b.stop_workers()
    return {
        "workers": workers,
        "backlog": len(created) * fanout,
        "delivered": got,
        "cpu_us": cpu / max(n1 - n0, 1) * 1e6,
        "redis_us": rcpu / max(n1 - n0, 1) * 1e6,
        "calls": {
            k: v
            for k, v in sorted(per.items(), key=lambda kv: -kv[1])
            if v >= 0.05 and not k.startswith("usec:")
        },
        # Valkey's time inside scripts, their own calls included (which commandstats also
        # counts under their own names); the rest of its CPU is the network, the replies, the
        # AOF and the plain commands.
        "redis_in_us": sum(
            v for k, v in per.items() if k in ("usec:evalsha", "usec:evalsha_ro", "usec:eval")
        ),
        "record_rate": record_rate,
        "rate": rate,
        "wall": wall,
        "worker_cpu": cpu / wall * 100,
        "redis_cpu": rcpu / wall * 100,
        "lag_target": target,
        "lag_injected": injected,
        "lag_n": len(lags),
        "lag_missing": len(sent) * fanout - len(lags),
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "max": max(lags) if lags else float("nan"),
    }


async def lag_at(b: Bench, r: Any, rate: float, seconds: float, worker_pid: int) -> list[Any]:
    """Inject transitions at `rate` for `seconds`; the lag split into the injector's own record
    call and what follows it, with the worker's and the injector's CPU over the same time."""
    await receiver_reset(b.receiver_url)
    n = max(1, int(rate * seconds))
    work = plan(await make_runs(r, -(-n // len(STATUSES))), n)
    sent: dict[str, float] = {}
    recorded: dict[str, float] = {}
    inflight: set[asyncio.Task[None]] = set()

    async def fire(run: dict[str, str], status: str) -> None:
        evt, at = await transition(r, run, status)
        sent[evt], recorded[evt] = at, time.time()

    cpu0, own0, start = cpu_seconds(worker_pid), time.process_time(), time.monotonic()
    for i, (run, status) in enumerate(work):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(inflight) >= 48:  # within the bench client's 64 connections: wait, do not fail
            await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(fire(run, status))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    if inflight:
        await asyncio.wait(inflight, timeout=30)
    wall = time.monotonic() - start
    worker_cpu, own_cpu = cpu_seconds(worker_pid) - cpu0, time.process_time() - own0
    await wait_count(b.receiver_url, len(sent), timeout=30)
    hits = (await receiver_stats(b.receiver_url))["hits"]
    lags = [(t - sent[evt]) * 1000 for evt, t in hits if evt in sent]
    record_ms = [(recorded[evt] - sent[evt]) * 1000 for evt in sent]
    return [
        rate,
        len(sent) / wall,
        percentile(lags, 50),
        percentile(lags, 99),
        percentile(record_ms, 99),
        f"{worker_cpu / wall * 100:.0f}%",
        f"{own_cpu / wall * 100:.0f}%",
        len(sent) - len(lags),
    ]


async def start_stack(b: Bench, concurrency: int, subscriptions: int = 1) -> Any:
    """Valkey, the receiver, the api and `subscriptions` subscriptions to the receiver; no
    worker yet."""
    b.start_valkey()
    b.start_receiver()
    b.relay_env(
        RELAY_DELIVERY_CONCURRENCY=str(concurrency),
        RELAY_DELIVERY_PER_SUBSCRIPTION=str(concurrency),
    )
    b.start_api()
    r = redis_client(b.redis_url)
    await subscribe(b.api_url, b.receiver_url + "/hook", subscriptions)
    return r


async def sweep_async(args: argparse.Namespace) -> None:
    """Lag against load with one worker: where the tail starts to grow, and whether the worker
    or the whole box (the injector's own record call) is what makes it grow."""
    with bench("delivery") as b:
        r = await start_stack(b, args.concurrency)
        (worker,) = b.start_workers(1)
        await asyncio.sleep(2)
        rows = [
            await lag_at(b, r, rate, args.seconds, worker.pid)
            for rate in map(float, args.lag_rates.split(","))
        ]
        b.stop_workers()
        await r.aclose()
    print(
        table(
            rows,
            [
                "want/s",
                "got/s",
                "lag p50 ms",
                "lag p99 ms",
                "injector record p99 ms",
                "worker CPU",
                "injector CPU",
                "missing",
            ],
        )
    )


async def main_async(args: argparse.Namespace) -> None:
    with bench("delivery") as b:
        r = await start_stack(b, args.concurrency, args.subscriptions)
        body = delivery_body(1024)
        hook = b.receiver_url + "/hook"
        raw, raw_cpu = await raw_post_stats(hook, args.raw_seconds, args.concurrency, body)
        raw_before = raw
        rows = []
        for w in parse_counts(args.workers):
            res = await phase(b, r, w, args.events, args.seconds, args.profile, args.subscriptions)
            rows.append(res)
            print(
                f"workers={w}: {res['rate']:.0f}/s ({res['rate'] / raw * 100:.0f}% of the first "
                f"bare run), lag p50={res['p50']:.1f}ms p99={res['p99']:.1f}ms",
                flush=True,
            )
        raw_after, raw_cpu_after = await raw_post_stats(
            hook, args.raw_seconds, args.concurrency, body
        )
        # The ratio is taken against the better of the two bare runs: a box busy with something
        # else during one of them must not flatter the relay.
        raw = max(raw, raw_after)
        await r.aclose()
    print()
    print(
        f"receiver raw capacity (bare aiohttp loop, {args.concurrency} in flight, 1 KiB body): "
        f"{raw_before:,.0f} POST/s before, {raw_after:,.0f} POST/s after (ratios against the "
        f"better); the loop's own CPU "
        f"{raw_cpu:.0f} / {raw_cpu_after:.0f} us per POST; {args.subscriptions} subscription(s)"
    )
    print(
        table(
            [
                [
                    x["workers"],
                    x["backlog"],
                    x["rate"],
                    f"{x['rate'] / raw * 100:.0f}%",
                    f"{x['worker_cpu']:.0f}%",
                    f"{x['cpu_us']:.0f}",
                    f"{x['redis_cpu']:.0f}%",
                    f"{x['lag_target']:.0f}/{x['lag_injected']:.0f}",
                    x["p50"],
                    x["p99"],
                    x["max"],
                    x["lag_missing"],
                ]
                for x in rows
            ],
            [
                "workers",
                "backlog",
                "deliveries/s",
                "of raw",
                "worker CPU",
                "CPU us",
                "valkey CPU",
                "lag rate want/got",
                "lag p50 ms",
                "lag p99 ms",
                "lag max ms",
                "missing",
            ],
        )
    )
    print(scale_out(rows))
    for x in rows:
        calls = ", ".join(f"{k} {v:.2f}" for k, v in x["calls"].items())
        print(
            f"workers={x['workers']}: Valkey CPU {x['redis_us']:.0f} us per delivery "
            f"({x['redis_in_us']:.0f} inside scripts); "
            f"commands per delivery: {calls}"
        )


def scale_out(rows: list[dict[str, Any]]) -> str:
    """Each worker count against one worker: throughput, and what throughput would be if each
    worker had a core of its own (rate / worker cores used): the fair reading on a box whose
    cores Valkey, the receiver and the injector share with the workers."""
    one = next((x for x in rows if x["workers"] == 1), None)
    if one is None:
        return ""
    lines = []
    for x in rows:
        if x["workers"] == 1:
            continue
        per_core_1 = one["rate"] / (one["worker_cpu"] / 100)
        per_core_n = x["rate"] / (x["worker_cpu"] / 100)
        lines.append(
            f"{x['workers']} workers / 1: {x['rate'] / one['rate']:.2f}x the deliveries/s; "
            f"per worker core {per_core_n:,.0f} vs {per_core_1:,.0f}/s "
            f"(CPU per delivery {x['cpu_us']:.0f} vs {one['cpu_us']:.0f} us): "
            f"{x['workers'] * per_core_n / per_core_1:.2f}x with a core each"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2,4")
    parser.add_argument("--events", type=int, default=12000, help="backlog per worker count")
    parser.add_argument("--seconds", type=float, default=8.0, help="lag phase length")
    parser.add_argument("--raw-seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64, help="in flight per worker")
    parser.add_argument(
        "--subscriptions", type=int, default=1, help="endpoints each transition goes to"
    )
    parser.add_argument(
        "--profile", action="store_true", help="run workers under cProfile (bench-artifacts/)"
    )
    parser.add_argument(
        "--lag-rates",
        default="",
        help="instead of the phases above: lag at these injected rates, e.g. 500,1000,2000",
    )
    args = parser.parse_args()
    asyncio.run(sweep_async(args) if args.lag_rates else main_async(args))


if __name__ == "__main__":
    main()
