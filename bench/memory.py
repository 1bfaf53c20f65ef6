"""Memory: Redis bytes per tracked run and per stored event (with and without a subscriber to
queue a delivery for), and one worker's RSS idle vs holding `--runs` tracked runs.

    .venv/bin/python bench/memory.py [--runs 10000]

Bytes are `INFO memory` used_memory deltas over `--runs` items, so per-key overheads are
included. Runs are created with the same store call the ingress makes (run hash, tenant index,
poll schedule, upstream de-dup key); events with `relay.recorder.record`, the call the workers
make. The worker-RSS figure with runs being *polled* comes from bench/polling.py.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from common import TENANT, bench, redis_client, rss_mb, subscribe, table
from delivery import SNAPSHOT, transition

from relay import keys
from relay.store.client import dumps
from relay.store.runs import TRACKING, create_run, upstream_key


async def used(r: Any) -> int:
    return int((await r.info("memory"))["used_memory"])


async def make_tracked(r: Any, count: int, due_at: float) -> list[dict[str, str]]:
    runs = []
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        now = time.time()
        upstream = str(uuid.uuid4())
        run = {
            "id": "run_" + uuid.uuid4().hex[:24],
            "tenant": TENANT,
            "provider": "citedy",
            "agent_id": "",
            "upstream_run_id": upstream,
            "state": TRACKING,
            "status": "",
            "sequence": "0",
            "source": "track",
            "metadata": dumps({"crm_id": upstream[:8]}),
            "created_at": repr(now),
            "updated_at": repr(now),
            "poll_interval": "0",
        }
        async with sem:
            await create_run(
                r,
                run=run,
                due_key=keys.DUE_POLL,
                due_at=due_at,
                idempotency_key=None,
                request_hash="",
                upstream_key=upstream_key(TENANT, "citedy", "", upstream),
            )
        runs.append(run)

    await asyncio.gather(*(one() for _ in range(count)))
    return runs


async def events_for(r: Any, runs: list[dict[str, str]]) -> None:
    sem = asyncio.Semaphore(64)

    async def one(run: dict[str, str]) -> None:
        async with sem:
            await transition(r, run, "queued")

    await asyncio.gather(*(one(run) for run in runs))


async def main_async(args: argparse.Namespace) -> None:
    n = args.runs
    rows: list[list[Any]] = []
    with bench("memory") as b:
        b.start_valkey()
        b.relay_env()
        b.start_api()
        r = redis_client(b.redis_url)
        far = time.time() + 3600  # tracked, but not due within the benchmark

        m0 = await used(r)
        runs = await make_tracked(r, n, far)
        m1 = await used(r)
        rows.append(["tracked run (hash + index + schedule + de-dup key)", (m1 - m0) / n])

        await events_for(r, runs)
        m2 = await used(r)
        rows.append(
            [f"stored event, no subscriber (~{len(dumps(SNAPSHOT))} B snapshot)", (m2 - m1) / n]
        )

        await subscribe(b.api_url, "http://127.0.0.1:9/hook")
        more = await make_tracked(r, n, far)
        m3 = await used(r)
        await events_for(r, more)
        m4 = await used(r)
        rows.append(["stored event + queued delivery (lane, record, schedule)", (m4 - m3) / n])

        b.start_workers(1)
        proc = b.workers[0]
        await asyncio.sleep(4)
        idle = rss_mb(proc.pid)
        await r.aclose()
    print(table(rows, ["item", "Redis bytes each"]))
    print(f"\nworker RSS with {2 * n} tracked runs in Redis (none due): {idle:.1f} MB")
    print("worker RSS while polling 10,000 runs: see bench/polling.py (RSS MB @all tracked)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
