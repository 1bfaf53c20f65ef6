"""Ingress: accepted `POST /v1/runs` per second against a bare Starlette handler that only parses
the JSON body and writes one hash to Redis, both on uvicorn with the same settings (one process,
access log off, log level warning), both against the same Valkey, same load generator.

    .venv/bin/python bench/ingress.py [--seconds 8] [--concurrency 32] [--rounds 1]
                                      [--max-active-runs N]

The relay's requests track a fresh upstream run each (`{"provider": "citedy",
"upstream_run_id": <uuid>}`): authenticate, validate, de-duplicate and create the run and its
poll schedule in one script. No worker runs, so nothing else competes for the 2 cores.

The active-run quota is still checked on every request (one SCARD in the script, the same cost
whatever the limit), but by default its limit is set above what the bench can create, since with
no worker nothing ends a run and the default 10,000 would turn most of an 8-second run into 429s;
`--max-active-runs 10000` measures with the default. `--rounds N` measures both servers N times,
alternately, and reports each one's median, so a burst of other load on a shared machine does not
decide the ratio; `CPU µs/req` (server CPU per accepted request) is the figure least moved by it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

import aiohttp
from common import API_KEY, bench, cpu_seconds, free_port, percentile, spawn, table, wait_port


def serve_bare(port: int, redis_url: str) -> None:
    import redis.asyncio as aioredis
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    r = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=256)

    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        run_id = "run_" + uuid.uuid4().hex[:24]
        await r.hset(
            f"bare:run:{run_id}",
            mapping={"id": run_id, "provider": body["provider"], "up": body["upstream_run_id"]},
        )
        return JSONResponse({"id": run_id}, status_code=202)

    app = Starlette(routes=[Route("/v1/runs", create, methods=["POST"])])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


async def load(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    ok = 0
    other = 0
    latencies: list[float] = []
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def loop() -> None:
            nonlocal ok, other
            while time.monotonic() < deadline:
                body = f'{{"provider":"citedy","upstream_run_id":"{uuid.uuid4()}"}}'
                started = time.perf_counter()
                async with s.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 202:
                        ok += 1
                        latencies.append((time.perf_counter() - started) * 1000)
                    else:
                        other += 1

        t0 = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        wall = time.monotonic() - t0
    return {
        "rate": ok / wall,
        "errors": other,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


async def main_async(args: argparse.Namespace) -> None:
    rows = []
    with bench("ingress") as b:
        b.start_valkey()
        b.relay_env(RELAY_MAX_ACTIVE_RUNS=str(args.max_active_runs))
        b.start_api()
        port = free_port()
        bare = spawn([__file__, "--serve-bare", str(port), b.redis_url], {}, b.logs / "bare.log")
        b.procs.append(bare)
        wait_port(port, bare)
        assert b.api is not None
        targets = [
            ("bare Starlette + 1 HSET", f"http://127.0.0.1:{port}/v1/runs", bare.pid),
            ("relay POST /v1/runs", f"{b.api_url}/v1/runs", b.api.pid),
        ]
        for _, url, _ in targets:
            await load(url, 1.0, args.concurrency)  # warm up
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in targets}
        for _ in range(args.rounds):
            for name, url, pid in targets:
                cpu0 = cpu_seconds(pid)
                res = await load(url, args.seconds, args.concurrency)
                used = cpu_seconds(pid) - cpu0
                res["cpu"] = used / args.seconds * 100
                res["cpu_per_req"] = used / max(1, res["rate"] * args.seconds) * 1e6
                runs[name].append(res)
        for name, _, _ in targets:
            ordered = sorted(runs[name], key=lambda x: x["rate"])
            row = dict(ordered[len(ordered) // 2])
            row["cpu_per_req"] = statistics.median(x["cpu_per_req"] for x in runs[name])
            row["errors"] = sum(x["errors"] for x in runs[name])
            row["name"] = name
            rows.append(row)
    bare = rows[0]
    print(
        table(
            [
                [
                    x["name"],
                    x["rate"],
                    f"{x['rate'] / bare['rate'] * 100:.0f}%",
                    x["p50"],
                    x["p99"],
                    f"{x['cpu']:.0f}%",
                    x["cpu_per_req"],
                    f"{bare['cpu_per_req'] / x['cpu_per_req'] * 100:.0f}%",
                    x["errors"],
                ]
                for x in rows
            ],
            [
                "server",
                "accepted/s",
                "of bare",
                "p50 ms",
                "p99 ms",
                "server CPU",
                "CPU µs/req",
                "of bare (CPU)",
                "non-202",
            ],
        )
    )
    if args.rounds > 1:
        print(
            "rounds (relay/bare accepted/s): "
            + ", ".join(
                f"{r['rate'] / b['rate'] * 100:.0f}%"
                for b, r in zip(runs[targets[0][0]], runs[targets[1][0]], strict=True)
            )
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-active-runs", type=int, default=10**9)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
