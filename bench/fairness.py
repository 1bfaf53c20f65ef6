"""Fair shares: tenant B's detection lag and delivery lag, alone and beside tenant A's backlog.

    .venv/bin/python bench/fairness.py [--backlog 5000] [--runs-b 50] [--rate 50] [--step 2]
        [--a-delay 1.0] [--workers 1] [--shared]

Two tenants, each with its own Citedy connection (so its own vendor account and its own request
budget of `--rate` req/s, which the simulator also enforces per key). Phase "alone": B tracks
`--runs-b` runs that change status every `--step` seconds, delivered to B's receiver. Phase
"beside A": first A tracks `--backlog` runs on its own account (created with a 60 s step, so
they stay non-terminal for the whole phase, and with min/max poll intervals of 1/2 s they want
far more polls per second than A's budget allows: A is permanently behind), with A's events
delivered to a receiver that takes `--a-delay` seconds to answer; then B does exactly what it
did alone. Reported for B: detection lag (vendor status change -> event recorded, from the
`updated_at` the simulator reports) and delivery lag (event recorded -> POST received), p50/p99,
side by side; and what A got meanwhile. `--shared`: both tenants use the operator's one Citedy
key instead (RELAY_SHARED_CONNECTIONS), so they share one budget of `--rate` req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from common import (
    CITEDY_KEY,
    bench,
    free_port,
    percentile,
    redis_client,
    spawn,
    table,
    wait_port,
)
from polling import parse_iso

from relay.store import keys
from relay.store.packing import unpack

TENANTS = {"A": "bench-key-tenant-a-0123456789", "B": "bench-key-tenant-b-0123456789"}
VENDOR = {"A": "citedy_agent_bench_tenant_a_01", "B": "citedy_agent_bench_tenant_b_01"}


def serve_slow_receiver(port: int, delay: float) -> None:
    """A's endpoint: answers 204 after `delay` seconds."""
    from aiohttp import web

    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        await asyncio.sleep(delay)
        count += 1
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"count": count})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/_stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def post_all(
    url: str, bearer: str, bodies: list[dict[str, Any]], expect: int | None = None
) -> list[Any]:
    """POST each body (32 at a time), the JSON answers in order; an answer other than `expect`
    (when given) stops it."""
    sem = asyncio.Semaphore(32)
    headers = {"authorization": f"Bearer {bearer}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:

        async def one(body: dict[str, Any]) -> Any:
            async with sem, s.post(url, json=body, headers=headers) as resp:
                answer = await resp.json()
                if expect is not None and resp.status != expect:
                    raise RuntimeError(f"POST {url} failed: {resp.status} {answer}")
                return answer

        return list(await asyncio.gather(*(one(body) for body in bodies)))


async def create_upstream(sim_url: str, key: str, count: int, prefix: str) -> list[str]:
    bodies = [{"domain": f"{prefix}{i}.example.com"} for i in range(count)]
    made = await post_all(f"{sim_url}/api/agent/citedy-warm-lead", key, bodies)
    return [str(answer["run"]["id"]) for answer in made]


async def track(api_url: str, tenant: str, upstream_ids: list[str]) -> list[str]:
    bodies = [{"provider": "citedy", "upstream_run_id": u} for u in upstream_ids]
    tracked = await post_all(f"{api_url}/v1/runs", TENANTS[tenant], bodies, expect=202)
    return [str(answer["id"]) for answer in tracked]


async def b_lags(r: Any, run_ids: list[str], receiver_url: str) -> tuple[list[float], list[float]]:
    """B's detection lags (changes after the first observation) and delivery lags."""
    pipe = r.pipeline(transaction=False)
    for rid in run_ids:
        pipe.lrange(keys.run_events(rid), 0, -1)
    per_run = await pipe.execute()
    created: dict[str, float] = {}
    detection: list[float] = []
    pipe = r.pipeline(transaction=False)
    order: list[tuple[str, bool]] = []
    for evts in per_run:
        for index, evt in enumerate(evts):
            pipe.hmget(keys.event(evt), "created_at", "body")
            order.append((evt, index > 0))
    for (evt, is_change), (created_at, body) in zip(order, await pipe.execute(), strict=True):
        created[evt] = float(created_at)
        if is_change:
            upstream = json.loads(unpack(body))["data"]["upstream"]
            detection.append(float(created_at) - parse_iso(upstream["updated_at"]))
    async with aiohttp.ClientSession() as s, s.get(f"{receiver_url}/_stats") as resp:
        hits = (await resp.json())["hits"]
    delivery = [at - created[evt] for evt, at in hits if evt in created]
    return detection, delivery


async def polls_of(r: Any, run_ids: list[str]) -> int:
    pipe = r.pipeline(transaction=False)
    for rid in run_ids:
        pipe.hget(keys.run(rid), "polls")
    return sum(int(p or 0) for p in await pipe.execute()) if run_ids else 0


async def phase(args: argparse.Namespace, backlog: int) -> dict[str, Any]:
    with bench("fairness") as b:
        b.start_valkey()
        b.start_simulator(step_seconds=60.0)
        b.start_receiver()
        slow_port = free_port()
        slow = spawn(
            [str(Path(__file__)), "--receiver", str(slow_port), "--delay", str(args.a_delay)],
            {},
            b.logs / "slow.log",
        )
        b.procs.append(slow)
        wait_port(slow_port, slow)
        slow_url = f"http://127.0.0.1:{slow_port}"
        b.relay_env(
            RELAY_API_KEYS=",".join(f"{t}:{k}" for t, k in TENANTS.items()),
            RELAY_SHARED_CONNECTIONS="true" if args.shared else "false",
            RELAY_VENDOR_RATE=str(args.rate),
            RELAY_POLL_MIN_INTERVAL="1",
            RELAY_POLL_MAX_INTERVAL="2",
            RELAY_MAX_ACTIVE_RUNS=str(backlog + 10_000),
        )
        b.start_api()
        r = redis_client(b.redis_url)
        vendor = {t: CITEDY_KEY for t in VENDOR} if args.shared else VENDOR
        with httpx.Client(base_url=b.sim_url, timeout=10) as sim:
            for key in set(vendor.values()):
                sim.post("/_sim/credits", json={"api_key": key, "balance": 10**9})
        for tenant, url in (("A", slow_url), ("B", b.receiver_url)):
            headers = {"authorization": f"Bearer {TENANTS[tenant]}"}
            with httpx.Client(base_url=b.api_url, headers=headers, timeout=10) as c:
                if not args.shared:
                    connection = {"api_key": vendor[tenant]}
                    c.put("/v1/connections/citedy", json=connection).raise_for_status()
                c.post("/v1/subscriptions", json={"url": f"{url}/hook"}).raise_for_status()
        b.start_workers(args.workers)
        a_runs: list[str] = []
        if backlog:
            ups = await create_upstream(b.sim_url, vendor["A"], backlog, "a")
            a_runs = await track(b.api_url, "A", ups)
        await asyncio.sleep(args.settle)  # workers up; A's backlog (if any) in full swing
        a_from, a_polls0 = time.monotonic(), await polls_of(r, a_runs)
        with httpx.Client(base_url=b.sim_url, timeout=10) as sim:
            sim.post(
                "/_sim/config",
                json={"step_seconds": args.step, "rate_limit_per_second": args.rate},
            ).raise_for_status()
            stats0 = sim.get("/_sim/stats").json()
        ups_b = await create_upstream(b.sim_url, vendor["B"], args.runs_b, "b")
        t0 = time.monotonic()
        b_runs = await track(b.api_url, "B", ups_b)
        deadline = t0 + 4 * args.step + 60
        while time.monotonic() < deadline:
            pipe = r.pipeline(transaction=False)
            for rid in b_runs:
                pipe.hget(keys.run(rid), "terminal")
            if all(t == "1" for t in await pipe.execute()):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # the last deliveries
        elapsed = time.monotonic() - t0
        detection, delivery = await b_lags(r, b_runs, b.receiver_url)
        with httpx.Client(base_url=b.sim_url, timeout=10) as sim:
            stats = sim.get("/_sim/stats").json()
        a_seconds = time.monotonic() - a_from
        a_polls = await polls_of(r, a_runs) - a_polls0
        async with aiohttp.ClientSession() as s, s.get(f"{slow_url}/_stats") as resp:
            a_delivered = (await resp.json())["count"]
        due_poll = await r.zcard(keys.DUE_POLL)
        await r.aclose()
    return {
        "backlog": backlog,
        "b_events": len(delivery),
        "det_p50": percentile(detection, 50),
        "det_p99": percentile(detection, 99),
        "dlv_p50": percentile(delivery, 50),
        "dlv_p99": percentile(delivery, 99),
        "a_polls": a_polls,
        "a_rate": a_polls / a_seconds,
        "b_seen": len(detection) + len(b_runs),
        "b_expected": 5 * len(b_runs),
        "a_delivered": a_delivered,
        "due_poll": due_poll,
        "status_429": stats["status_429"] - stats0["status_429"],
        "elapsed": elapsed,
    }


async def main_async(args: argparse.Namespace) -> None:
    rows = []
    for backlog in (0, args.backlog):
        rows.append(await phase(args, backlog))
        print(f"backlog={backlog}: done", flush=True)
    print()
    print(
        f"B: {args.runs_b} runs, status step {args.step:g}s; budget {args.rate:g} req/s per "
        f"credential ({'one shared by A and B' if args.shared else 'one each'}); A's endpoint "
        f"answers after {args.a_delay:g}s; {args.workers} worker(s)"
    )
    print(
        table(
            [
                [
                    x["backlog"],
                    f"{x['b_seen']}/{x['b_expected']}",
                    x["b_events"],
                    x["det_p50"],
                    x["det_p99"],
                    x["dlv_p50"],
                    x["dlv_p99"],
                    x["a_rate"],
                    x["a_delivered"],
                    x["status_429"],
                    x["due_poll"],
                ]
                for x in rows
            ],
            [
                "A's runs",
                "B statuses seen",
                "B deliveries",
                "B detect p50 s",
                "B detect p99 s",
                "B deliver p50 s",
                "B deliver p99 s",
                "A polls/s",
                "A delivered",
                "vendor 429s",
                "runs due at end",
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--runs-b", type=int, default=50)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--step", type=float, default=2.0)
    parser.add_argument("--a-delay", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--shared", action="store_true", help="both on the operator's key")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        serve_slow_receiver(args.receiver, args.delay)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
