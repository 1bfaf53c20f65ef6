"""What an idle worker costs Redis, and how soon work made due now starts (DESIGN.md: "an idle
worker costs Redis next to nothing"; the chart scales by adding worker replicas).

Starts Valkey, the simulator, a receiver, the api and `--workers` idle workers; counts the
commands Valkey processes over `--seconds` with nothing to do (INFO stats, less this bench's own
reads), per worker per second; then sends `--pings` test pings to a subscription one at a time
(`POST /v1/subscriptions/{id}/test`: the api queues the delivery, a napping deliver pump is
nudged) and times each from the request to the receiver's count moving.

    ./run bench idle
    ./run bench idle --workers 4 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
from common import API_KEY, bench, percentile, receiver_stats, redis_client, subscribe

INSIDE_SCRIPTS = {
    "cmdstat_evalsha",
    "cmdstat_blpop",
    "cmdstat_eval",
    "cmdstat_time",
    "cmdstat_zrange",
    "cmdstat_zrangebyscore",
    "cmdstat_hget",
    "cmdstat_zadd",
    "cmdstat_hset",
    "cmdstat_llen",
}


async def idle_load(url: str, seconds: float) -> tuple[float, float, float]:
    """Over `seconds`: commands sent to Valkey per second (a script counts once), every command
    run per second (a script's own calls included), and Valkey's busy time in µs per second
    (INFO commandstats, less this bench's own INFO)."""
    r = redis_client(url)
    first: dict[str, Any] = await r.info("commandstats")
    await asyncio.sleep(seconds)
    last: dict[str, Any] = await r.info("commandstats")
    await r.aclose()
    calls = {k: v["calls"] - first.get(k, {"calls": 0})["calls"] for k, v in last.items()}
    usec = {k: v["usec"] - first.get(k, {"usec": 0})["usec"] for k, v in last.items()}
    calls.pop("cmdstat_info", None)
    usec.pop("cmdstat_info", None)
    # Commands that only run inside the relay's scripts here (claim: TIME, ZRANGEBYSCORE, ZRANGE)
    # are not sent by anyone; arq's own queue poll (ZRANGEBYSCORE) is, so it is counted apart.
    sent = sum(calls.get(k, 0) for k in ("cmdstat_evalsha", "cmdstat_blpop", "cmdstat_eval"))
    sent += sum(n for k, n in calls.items() if k not in INSIDE_SCRIPTS)
    return sent / seconds, sum(calls.values()) / seconds, sum(usec.values()) / seconds


async def ping_latencies(api_url: str, receiver_url: str, sub_id: str, pings: int) -> list[float]:
    out = []
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as c:
        for _ in range(pings):
            seen = int((await receiver_stats(receiver_url))["count"])
            t0 = time.perf_counter()
            (await c.post(f"/v1/subscriptions/{sub_id}/test")).raise_for_status()
            while int((await receiver_stats(receiver_url))["count"]) <= seen:
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError("a ping took over 10 s")
                await asyncio.sleep(0.002)
            out.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.5)  # the pumps go back to sleep between pings
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pings", type=int, default=20)
    args = parser.parse_args()
    with bench("idle") as b:
        b.start_valkey()
        b.start_simulator()
        receiver = b.start_receiver()
        b.relay_env()
        api = b.start_api()
        b.start_workers(args.workers)
        await asyncio.sleep(4.0)  # start-up settles
        sent, run, busy = await idle_load(b.redis_url, args.seconds)
        (sub,) = await subscribe(api, receiver + "/hook")
        await asyncio.sleep(1.0)
        latencies = await ping_latencies(api, receiver, sub["id"], args.pings)
    n = args.workers
    print(
        f"idle, per worker (the api's share included): {sent / n:.1f} commands/s sent, "
        f"{run / n:.1f} run (scripts' own calls counted), {busy / n:.0f} µs/s of Valkey time"
    )
    print(
        f"ping (api -> queued -> deliver pump -> receiver), {args.pings} one at a time: "
        f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
        f"max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
