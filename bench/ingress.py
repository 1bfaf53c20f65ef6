"""Ingress: accepted `POST /v1/runs` per second against a bare Starlette handler that only parses
the JSON body and writes one hash to Redis, both on uvicorn with the same settings (one process,
access log off, log level warning), both against the same Valkey, same load generator.

    .venv/bin/python bench/ingress.py [--seconds 8] [--concurrency 32]

The relay's requests track a fresh upstream run each (`{"provider": "citedy",
"upstream_run_id": <uuid>}`): authenticate, validate, de-duplicate and create the run and its
poll schedule in one script. No worker runs, so nothing else competes for the 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
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
        b.relay_env()
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
        for name, url, pid in targets:
            await load(url, 1.0, args.concurrency)  # warm up
            cpu0 = cpu_seconds(pid)
            res = await load(url, args.seconds, args.concurrency)
            res["cpu"] = (cpu_seconds(pid) - cpu0) / args.seconds * 100
            res["name"] = name
            rows.append(res)
    bare_rate = rows[0]["rate"]
    print(
        table(
            [
                [
                    x["name"],
                    x["rate"],
                    f"{x['rate'] / bare_rate * 100:.0f}%",
                    x["p50"],
                    x["p99"],
                    f"{x['cpu']:.0f}%",
                    x["errors"],
                ]
                for x in rows
            ],
            ["server", "accepted/s", "of bare", "p50 ms", "p99 ms", "server CPU", "non-202"],
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
