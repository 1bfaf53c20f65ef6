"""Polling: track `--runs` concurrent Citedy runs with the relay's workers against the simulator
(its own process) and report upstream requests per run from start to terminal, p50/p99 detection
lag (vendor status change -> event recorded), worker CPU and RSS, and the vendor request rate
against the configured budget.

    .venv/bin/python bench/polling.py [--runs 10000] [--workers 1] [--step 12]
        [--phases queued=2,signals_running=9,contacts_running=5,drafting_running=14]
        [--min-interval 4] [--max-interval 60] [--rate 1500] [--fixed] [--start]

Each run is created on the simulator (which then walks queued -> signals_running ->
contacts_running -> drafting_running -> completed, one status per `--step` seconds) and tracked
as soon as it is created with `POST /v1/runs {"provider": "citedy", "upstream_run_id": ...}`,
`--pace` runs a second (the simulator's per-key limit is the budget plus the pace: the bench's
creates share the relay's key). The vendor's time of
each change is the `updated_at` the simulator reports in the snapshot stored with the event, so
lag = event created_at - upstream updated_at (the first observation of a run is not a change and
is left out). `--fixed` runs a second pass with RELAY_POLL_MAX_INTERVAL = the minimum, i.e.
fixed-interval polling, measured instead of estimated. `--phases` gives phases their own lengths
(the simulator's `citedy_phase_seconds`; the others last `--step`), as Citedy's do.

`--start` has the relay start the runs instead (`POST /v1/runs {"provider": "citedy", "input":
{"domain": ...}}`, the relay's start job calls the vendor): the start's answer is the run's first
observation, so a run needs no GET to see `queued`. req/run counts GETs in both modes; the vendor
starts are counted apart (start/run) and in the CPU per vendor request.

Missed statuses: a status whose phase lasted longer than the minimum interval after the run was
tracked (so a poller could see it) but that no event recorded. Worker CPU per vendor request is
the workers' CPU seconds over the vendor GETs made meanwhile; Valkey's the same, from its INFO cpu.

After each phase, the workers stopped, a bare aiohttp loop GETs the same simulator's runs at the
same budget for `--bare-seconds` (the network exchange a poll costs at the least), and its CPU per
GET is printed beside the workers', with issue 27's targets and whether the row meets each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime
from typing import Any

import aiohttp
from common import (
    API_KEY,
    CITEDY_KEY,
    bench,
    cpu_seconds,
    parse_counts,
    percentile,
    redis_client,
    rss_mb,
    table,
)

from relay.store import keys
from relay.store.packing import unpack


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def create_and_track(
    sim_url: str, api_url: str, count: int, pace: float, start: bool = False, tag: str = ""
) -> float:
    """Create `count` runs on the simulator, at most `pace` per second, each tracked in the relay
    as soon as the vendor answers (so every run is seen from its first phase however short the
    phases are), or with `start` have the relay start them (domains named by `tag` and the
    run's number); returns seconds taken."""
    sem = asyncio.Semaphore(64)
    started = time.monotonic()
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as s:

        async def one(i: int) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, started + i / pace - time.monotonic()))
            async with sem:
                if start:
                    async with s.post(
                        f"{api_url}/v1/runs",
                        json={"provider": "citedy", "input": {"domain": f"{tag}{i}.example.com"}},
                        headers={"authorization": f"Bearer {API_KEY}"},
                    ) as resp:
                        await resp.read()
                        if resp.status != 202:
                            failures += 1
                    return
                async with s.post(
                    f"{sim_url}/api/agent/citedy-warm-lead",
                    json={"domain": f"co{i}.example.com"},
                    headers={"authorization": f"Bearer {CITEDY_KEY}"},
                ) as resp:
                    upstream = str((await resp.json())["run"]["id"])
                async with s.post(
                    f"{api_url}/v1/runs",
                    json={"provider": "citedy", "upstream_run_id": upstream},
                    headers={"authorization": f"Bearer {API_KEY}"},
                ) as resp:
                    await resp.read()
                    if resp.status != 202:
                        failures += 1

        await asyncio.gather(*(one(i) for i in range(count)))
    if failures:
        raise RuntimeError(f"{failures} tracking requests failed")
    return time.monotonic() - started


async def valkey_cpu(r: Any) -> float:
    """Valkey's own CPU seconds (user + system, INFO cpu): the Redis side of a request's cost,
    on the same cores as the worker."""
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def sim_stats(s: aiohttp.ClientSession, sim_url: str) -> Any:
    async with s.get(f"{sim_url}/_sim/stats") as resp:
        return await resp.json()


async def bare_gets(
    sim_url: str, upstream_ids: list[str], seconds: float, rate: float, concurrency: int = 64
) -> tuple[float, float]:
    """The bare network exchange a poll is measured against: a plain aiohttp loop GETting the
    simulator's runs (the relay's own, ended) at `rate` a second, the budget the relay's worker
    was paced to, for `seconds`, in this process with nothing else running. Returns (GETs
    answered 200 per second, the loop's own CPU ms per GET)."""
    total = max(1, int(rate * seconds))
    headers = {"authorization": f"Bearer {CITEDY_KEY}"}
    urls = [f"{sim_url}/api/agent/citedy-warm-lead/{u}" for u in upstream_ids]
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def loop(first: int) -> None:
            nonlocal ok
            for i in range(first, total, concurrency):
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                async with s.get(urls[i % len(urls)], headers=headers) as resp:
                    await resp.read()
                    ok += resp.status == 200

        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(loop(i) for i in range(concurrency)))
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    return ok / elapsed, cpu * 1000 / max(ok, 1)


async def upstream_ids(r: Any, count: int) -> list[str]:
    """Up to `count` vendor run ids of the bench tenant's runs, for the bare loop to GET."""
    ids = [rid async for rid, _ in r.zscan_iter(keys.tenant_runs("bench"), count=1000)][:count]
    pipe = r.pipeline(transaction=False)
    for rid in ids:
        pipe.hget(keys.run(rid), "upstream_run_id")
    return [u for u in await pipe.execute() if u]


STAGES = ("queued", "signals_running", "contacts_running", "drafting_running", "completed")


def phase_lengths(args: argparse.Namespace) -> dict[str, float]:
    own = dict(parse_phases(args.phases))
    return {status: own.get(status, args.step) for status in STAGES[:-1]}


def parse_phases(text: str) -> list[tuple[str, float]]:
    out = []
    for part in filter(None, text.split(",")):
        status, _, seconds = part.partition("=")
        out.append((status.strip(), float(seconds)))
    return out


def missed_statuses(
    upstream_created: float, tracked: float, seen: set[str], lengths: dict[str, float], low: float
) -> int:
    """Statuses that lasted longer than `low` once the run was tracked and were never recorded."""
    missed = 0
    start = upstream_created
    for status in STAGES:
        end = start + lengths.get(status, float("inf"))
        if end - max(start, tracked) > low and status not in seen:
            missed += 1
        start = end
    return missed


async def collect_lags(
    r: Any, lengths: dict[str, float], low: float, since: float = 0.0
) -> tuple[list[float], int, int]:
    """Detection lags (s) of every status change after a run's first observation; the count of
    terminal runs, and of missed statuses (see the module's docstring). Only runs tracked at or
    after `since` (unix seconds) count: the warm-up's do not."""
    run_ids = [rid async for rid in r.zscan_iter(keys.tenant_runs("bench"), count=1000)]
    ids = [rid for rid, score in run_ids if score >= since]
    lags: list[float] = []
    terminal = missed = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        pipe = r.pipeline(transaction=False)
        for rid in chunk:
            pipe.lrange(keys.run_events(rid), 0, -1)
            pipe.hmget(keys.run(rid), "terminal", "created_at")
        out = await pipe.execute()
        pipe = r.pipeline(transaction=False)
        for evts in out[0::2]:
            for evt in evts:
                pipe.hmget(keys.event(evt), "created_at", "body")
        terminal += sum(1 for t, _ in out[1::2] if t == "1")
        bodies = iter(await pipe.execute())
        for evts, (_, tracked) in zip(out[0::2], out[1::2], strict=True):
            seen: set[str] = set()
            created = 0.0
            for i, (created_at, body) in enumerate(next(bodies) for _ in evts):
                data = json.loads(unpack(body))["data"]
                upstream = data["upstream"]
                seen.add(data["run"]["status"])
                created = parse_iso(upstream["created_at"])
                if i:
                    lags.append(float(created_at) - parse_iso(upstream["updated_at"]))
            if evts:
                missed += missed_statuses(created, float(tracked), seen, lengths, low)
    return lags, terminal, missed


async def run_phase(args: argparse.Namespace, workers: int, max_interval: float) -> dict[str, Any]:
    with bench("polling") as b:
        b.start_valkey()
        lengths = phase_lengths(args)
        b.start_simulator(
            step_seconds=args.step,
            citedy_phase_seconds=dict(parse_phases(args.phases)),
            # the vendor's limit covers the bench's own creates beside the relay's budget
            rate_limit_per_second=args.rate + args.pace,
        )
        b.relay_env(
            RELAY_POLL_MIN_INTERVAL=str(args.min_interval),
            RELAY_POLL_MAX_INTERVAL=str(max_interval),
            RELAY_VENDOR_RATE=str(args.rate),
            RELAY_POLL_CONCURRENCY=str(args.concurrency),
        )
        b.start_api()
        r = redis_client(b.redis_url)
        procs = b.start_workers(workers)
        sampler = aiohttp.ClientSession()
        if args.warmup:
            # Runs tracked and ended first, so the learned phase lengths are warm, as they are in
            # a relay that has been running (they are kept for days, relay/store/phases.py).
            await create_and_track(b.sim_url, b.api_url, args.warmup, args.pace, args.start, "warm")
            while await r.zcard(keys.DUE_POLL) + await r.zcard(keys.DUE_START):
                await asyncio.sleep(0.5)
        main_since = time.time()
        base = await sim_stats(sampler, b.sim_url)
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        valkey0 = await valkey_cpu(r)
        t0 = time.monotonic()
        peak = 0
        setup_task = asyncio.ensure_future(
            create_and_track(b.sim_url, b.api_url, args.runs, args.pace, args.start, "co")
        )
        while not setup_task.done():
            peak = max(peak, await r.zcard(keys.DUE_POLL))
            await asyncio.sleep(0.5)
        setup = setup_task.result()
        # every phase to terminal, plus up to one max interval to see it, plus slack
        deadline = t0 + setup + sum(lengths.values()) + max_interval + 30
        rss_peak = 0.0
        rss_at_full = 0.0
        while time.monotonic() < deadline:
            rss = sum(rss_mb(p.pid) for p in procs)
            rss_peak = max(rss_peak, rss)
            tracked = await r.zcard(keys.DUE_POLL)
            peak = max(peak, tracked)
            if not rss_at_full and tracked >= args.runs * 0.99:
                rss_at_full = rss
            if tracked == 0 and not await r.zcard(keys.DUE_START):
                break
            await asyncio.sleep(0.5)
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True))
        valkey = await valkey_cpu(r) - valkey0
        stats = await sim_stats(sampler, b.sim_url)
        await sampler.close()
        lags, terminal, missed = await collect_lags(r, lengths, args.min_interval, main_since)
        learned = await r.hgetall(keys.phases("citedy"))
        info = await r.info("memory")
        # Side by side in the same run: the same GETs from a bare client, the relay's workers
        # stopped, the simulator and Valkey still up.
        b.stop_workers()
        bare_rate, bare_cpu = await bare_gets(
            b.sim_url, await upstream_ids(r, 1000), args.bare_seconds, args.rate
        )
        await r.aclose()
    gets = list(stats["gets_per_run"].values())
    requests = sum(gets) - sum(base["gets_per_run"].values())
    starts = stats["requests"].get("citedy.create_run", 0) if args.start else 0
    starts -= base["requests"].get("citedy.create_run", 0) if args.start else 0
    return {
        "workers": workers,
        "max_interval": max_interval,
        "runs": args.runs,
        "terminal": terminal,
        "setup": setup,
        "peak": peak,
        "wall": wall,
        "req_per_run": requests / args.runs,
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "changes": len(lags),
        "cpu": cpu / wall * 100,
        "start_per_run": starts / args.runs,
        "cpu_ms_per_req": cpu * 1000 / max(1, requests + starts),
        "valkey_ms_per_req": valkey * 1000 / max(1, requests + starts),
        "missed": missed,
        "rss_full": rss_at_full,
        "rss_peak": rss_peak,
        "max_rps": stats["max_requests_per_second"],
        "status_429": stats["status_429"] - base["status_429"],
        "redis_mb": int(info["used_memory"]) / 2**20,
        "learned": {k: round(float(v), 2) for k, v in sorted(learned.items())},
        "bare_rate": bare_rate,
        "bare_cpu": bare_cpu,
    }


async def main_async(args: argparse.Namespace) -> None:
    rows = []
    for w in parse_counts(args.workers):
        rows.append(await run_phase(args, w, args.max_interval))
        print(f"workers={w}: done; learned phases {rows[-1]['learned']}", flush=True)
    if args.fixed:
        for w in parse_counts(args.workers):
            rows.append(await run_phase(args, w, args.min_interval))
            print(f"workers={w} fixed: done", flush=True)
    lengths = phase_lengths(args)
    duration = sum(lengths.values())
    fixed_requests = duration / args.min_interval + 1
    print()
    shown = ", ".join(f"{k} {v:g}s" for k, v in lengths.items())
    print(
        f"{args.runs} runs, simulator phases {shown} (terminal after {duration:g}s), "
        f"poll interval {args.min_interval:g}..{args.max_interval:g}s, budget {args.rate:g} req/s"
    )
    print(
        f"fixed-interval polling at {args.min_interval:g}s would cost about "
        f"{fixed_requests:.1f} requests per run and {args.runs / args.min_interval:,.0f} req/s "
        f"for {args.runs} runs, with lag p50 ~{args.min_interval / 2:g}s"
    )
    print(
        table(
            [
                [
                    x["workers"],
                    "adaptive" if x["max_interval"] > args.min_interval else "fixed",
                    f"{x['terminal']}/{x['runs']}",
                    x["peak"],
                    x["setup"],
                    x["req_per_run"],
                    x["start_per_run"],
                    x["p50"],
                    x["p99"],
                    f"{x['p50'] / args.min_interval:.2f} / {x['p99'] / args.min_interval:.2f}",
                    x["missed"],
                    f"{x['max_rps']}/{args.rate:g}",
                    x["status_429"],
                    f"{x['cpu']:.0f}%",
                    f"{x['cpu_ms_per_req']:.3f}",
                    f"{x['valkey_ms_per_req']:.3f}",
                    x["rss_full"],
                    x["wall"],
                ]
                for x in rows
            ],
            [
                "workers",
                "policy",
                "terminal",
                "peak tracked",
                "setup s",
                "req/run",
                "start/run",
                "lag p50 s",
                "lag p99 s",
                "p50 / p99 x min",
                "missed",
                "max req/s / budget",
                "429s",
                "worker CPU",
                "CPU ms/req",
                "Valkey ms/req",
                "RSS MB @all tracked",
                "wall s",
            ],
        )
    )
    for x in rows:
        print(targets(args, x))


#: Issue 27's polling targets.
CPU_MS_PER_REQUEST = 0.3
REQUESTS_PER_RUN = 4.5
#: The requests-per-run target holds when every phase lasts this long or more.
REQUESTS_PER_RUN_PHASES = 5.0


def targets(args: argparse.Namespace, x: dict[str, Any]) -> str:
    """One row's figures against the targets, beside the bare GET loop measured in its run."""
    low = args.min_interval
    cpu, gets = x["cpu_ms_per_req"], x["req_per_run"]
    checks = [
        (f"CPU {cpu:.3f} <= {CPU_MS_PER_REQUEST} ms/request", cpu <= CPU_MS_PER_REQUEST),
        (f"lag p50 {x['p50']:.2f} <= {low:g} s", x["p50"] <= low),
        (f"lag p99 {x['p99']:.2f} <= {3 * low:g} s", x["p99"] <= 3 * low),
        (f"missed {x['missed']} = 0", x["missed"] == 0),
    ]
    if min(phase_lengths(args).values()) >= REQUESTS_PER_RUN_PHASES:
        text = f"{gets:.2f} <= {REQUESTS_PER_RUN} GETs/run"
        if not args.start:
            # Nothing but a GET shows a tracked run's status, and none may be missed; a run the
            # relay starts has its first status in the start's answer (--start).
            text += f" (a tracked run's floor: {len(STAGES)}, a GET per status)"
        checks.append((text, gets <= REQUESTS_PER_RUN))
    shown = "; ".join(f"{text} {'met' if ok else 'NOT met'}" for text, ok in checks)
    return (
        f"workers={x['workers']}: a bare aiohttp GET loop at {args.rate:g}/s against the same "
        f"simulator used {x['bare_cpu']:.3f} ms CPU per GET ({x['bare_rate']:,.0f} GETs/s); "
        f"the workers {cpu:.3f} ms per vendor request ({cpu / x['bare_cpu']:.1f}x bare)\n"
        f"  targets: {shown}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--workers", default="1", help="worker counts, e.g. 1,2,4")
    parser.add_argument("--step", type=float, default=12.0, help="simulator seconds per status")
    parser.add_argument(
        "--phases", default="", help="own phase lengths, e.g. queued=2,signals_running=9"
    )
    parser.add_argument("--min-interval", type=float, default=4.0)
    parser.add_argument("--max-interval", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1500.0, help="vendor budget, req/s")
    parser.add_argument("--concurrency", type=int, default=256, help="RELAY_POLL_CONCURRENCY")
    parser.add_argument(
        "--pace", type=float, default=750.0, help="runs created and tracked per second"
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="runs tracked to their end before the measured ones"
    )
    parser.add_argument("--fixed", action="store_true", help="also measure fixed-interval")
    parser.add_argument(
        "--start", action="store_true", help="the relay starts the runs instead of tracking them"
    )
    parser.add_argument(
        "--bare-seconds", type=float, default=3.0, help="the bare GET loop's length, per phase"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
