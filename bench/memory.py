"""Memory: Redis bytes per completed run and per event with a realistic Citedy result, and the
plateau of `used_memory` under a constant load with a short retention.

    .venv/bin/python bench/memory.py [--runs 300] [--plateau-seconds 60] [--rate 4]

1. Bytes per completed run: `--runs` Citedy runs, each walked through its five statuses the way
   the workers do it (`relay.delivery.recorder.record` with the vendor snapshot, the run fields a
   poll
   writes, one subscriber whose delivery is logged and finished), with a realistic result
   (>= 15 KB of JSON: 3 contacts, 3 drafts, 10 signals). Figures are `INFO memory` used_memory
   deltas over all runs (per-key overheads included), beside the final snapshot's JSON size.
   The same code runs against an older commit (copy this file there) for a before/after.
2. Plateau: the real stack (api, one worker, simulator, receiver) with RELAY_RETENTION of a few
   seconds, runs started at a constant `--rate` per second for `--plateau-seconds`; used_memory
   sampled every 2 s. Memory must level off once runs expire as fast as they arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
import zlib
from typing import Any

import httpx
from common import API_KEY, TENANT, bench, redis_client, subscribe, table

from relay.delivery import events
from relay.delivery.recorder import record
from relay.store import keys
from relay.store.client import bind, dumps
from relay.store.runs import COMPLETED, TRACKING, create_run, upstream_key

STATUSES = ("queued", "signals_running", "contacts_running", "drafting_running", "completed")
_SYLLABLES = "ka lo mi ne ru sa te vo zu pri dan mel tor gus fen hal qui bro ost ent".split()
_WORDS_RNG = random.Random(7)
#: 600 made-up words: prose-like text that zlib shrinks about as much as real report text (~3x),
#: not the 10x+ a small vocabulary would flatter it with.
WORDS = [
    "".join(_WORDS_RNG.choice(_SYLLABLES) for _ in range(_WORDS_RNG.randint(1, 4)))
    for _ in range(600)
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def realistic_result(upstream: str, seed: int) -> dict[str, Any]:
    """A WarmLeadResult of the contract's shape with realistic volume: 10 signals, 3 contacts,
    3 drafts of a few paragraphs each (the size a real report has, ~15-17 KB of JSON)."""
    rng = random.Random(seed)
    domain = f"acme-{seed}.example"
    signals = [
        {
            "id": f"sig_{i + 1}",
            "type": rng.choice(("hiring", "content_velocity", "tech_change", "funding")),
            "title": _text(rng, 9),
            "summary": _text(rng, 70),
            "source_url": f"https://{domain}/news/{uuid.UUID(int=rng.getrandbits(128))}",
            "observed_at": f"2026-11-{1 + i:02d}T10:00:00Z",
            "weight": round(rng.uniform(0.4, 1.0), 2),
        }
        for i in range(10)
    ]
    contacts = [
        {
            "id": f"ct_{i + 1}",
            "name": f"{rng.choice(('Ana', 'Ben', 'Chen', 'Dara'))} {rng.choice(('Li', 'Moss'))}",
            "role": rng.choice(("Head of Content", "VP Marketing", "CMO")),
            "email": f"person{i}.{seed}@{domain}",
            "email_status": "verified",
            "linkedin_url": f"https://www.linkedin.com/in/{uuid.UUID(int=rng.getrandbits(128))}",
            "seniority": "director",
            "notes": _text(rng, 30),
        }
        for i in range(3)
    ]
    drafts = [
        {
            "id": f"dr_{i + 1}",
            "contact_id": contacts[i]["id"],
            "channel": "email",
            "subject": _text(rng, 8),
            "body": "\n\n".join(_text(rng, 80) for _ in range(3)),
        }
        for i in range(3)
    ]
    rows = [
        {"domain": domain, "contact_name": c["name"], "role": c["role"], "email": c["email"]}
        for c in contacts
    ]
    return {
        "runId": upstream,
        "status": "completed",
        "account": {"domain": domain, "name": f"Acme {seed}", "country": "US", "icp": "b2b saas"},
        "signals": signals,
        "contacts": contacts,
        "scoring": {"fit": 81, "intent": 77, "total": 79, "tier": "B"},
        "drafts": drafts,
        "policy": {"icp": "b2b saas", "freshnessDays": 30, "maxContacts": 3, "drafts": 3},
        "counters": {"signals": 10, "contacts": 3, "drafts": 3, "credits_charged": 40},
        "exportRows": rows,
        "exportUrls": {"csv": f"https://x.example/{upstream}.csv", "xlsx": "https://x.example/x"},
    }


def snapshot(upstream: str, status: str, seed: int) -> dict[str, Any]:
    return {
        "id": upstream,
        "status": status,
        "domain": f"acme-{seed}.example",
        "normalized_domain": f"acme-{seed}.example",
        "credits_charged": 40,
        "result": realistic_result(upstream, seed) if status == "completed" else None,
        "created_at": "2026-11-27T10:00:00Z",
        "updated_at": "2026-11-27T10:05:00Z",
    }


async def used(r: Any) -> int:
    return int((await r.info("memory"))["used_memory"])


async def one_completed_run(r: Any, sub_id: str, seed: int) -> None:
    """A Citedy run from first poll to completed, with one subscriber, as the workers write it."""
    now = time.time()
    upstream = str(uuid.uuid4())
    run = {
        "id": "run_" + uuid.uuid4().hex[:20],
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
    await create_run(
        r,
        run=run,
        due_key=keys.DUE_POLL,
        due_at=now + 3600,
        idempotency_key=None,
        request_hash="",
        upstream_key=upstream_key(TENANT, "citedy", "", upstream),
    )
    scripts = bind(r)
    for status in STATUSES:
        snap = snapshot(upstream, status, seed)
        terminal = status == "completed"
        fields = {
            "snapshot": dumps(snap),
            "poll_interval": "2.0",
            "errors": "0",
            "not_found": "0",
            "last_polled_at": repr(now),
            "last_change_at": repr(now),
            "state": COMPLETED if terminal else TRACKING,
        }
        outcome, evt = await record(
            r,
            run,
            event_type=events.STATUS_CHANGED,
            status_key=status,
            now=time.time(),
            terminal=terminal,
            status=status,
            snapshot=snap,
            run_fields=fields,
        )
        assert outcome == "ok", outcome
        run["sequence"] = str(int(run["sequence"]) + 1)
        run["previous_status"], run["status"] = run["status"], status
        # The delivery, as workers/deliver.py logs and finishes it.
        attempt = {
            "id": "att_" + uuid.uuid4().hex[:20],
            "event_id": evt,
            "run_id": run["id"],
            "subscription_id": sub_id,
            "attempt": 1,
            "at": time.time(),
            "status_code": 204,
            "latency_ms": 3.1,
            "error": None,
            "outcome": "succeeded",
            "response_excerpt": "",
        }
        await r.lpush(keys.sub_attempts(sub_id), dumps(attempt))
        member = keys.pair(sub_id, run["id"])
        await scripts.finish_head(
            keys=[
                keys.lane(sub_id, run["id"]),
                keys.delivery(evt, sub_id),
                keys.DUE_DELIVER,
                keys.sub_pairs(sub_id),
                keys.sub_dead(sub_id),
                "",  # no lease: this benchmark is the only writer
                keys.sub_waiting(sub_id),
            ],
            args=[evt, time.time(), member, run["id"], "succeeded", 1, "204", "", "0", ""],
        )


async def per_run(args: argparse.Namespace) -> list[list[Any]]:
    with bench("memory") as b:
        b.start_valkey()
        b.relay_env()
        b.start_api()
        r = redis_client(b.redis_url)
        (sub,) = await subscribe(b.api_url, "http://127.0.0.1:9/hook")
        await one_completed_run(r, sub["id"], 0)  # warm up scripts and structures
        m0 = await used(r)
        sem = asyncio.Semaphore(32)

        async def one(seed: int) -> None:
            async with sem:
                await one_completed_run(r, sub["id"], seed)

        await asyncio.gather(*(one(seed) for seed in range(1, args.runs + 1)))
        m1 = await used(r)
        await r.aclose()
    text = json.dumps(snapshot(str(uuid.uuid4()), "completed", 1), separators=(",", ":"))
    final = len(text)
    per = (m1 - m0) / args.runs
    return [
        ["final snapshot, JSON bytes", final],
        [
            "final snapshot, zlib bytes (how compressible the sample is)",
            len(zlib.compress(text.encode(), 6)),
        ],
        ["Redis bytes per completed run (5 events, 1 subscriber)", round(per)],
        ["Redis bytes per event", round(per / len(STATUSES))],
        ["per run / final snapshot", round(per / final, 2)],
    ]


async def plateau(args: argparse.Namespace) -> list[list[Any]]:
    rows: list[list[Any]] = []
    with bench("memory-plateau") as b:
        b.start_valkey()
        b.start_simulator(step_seconds=0.5)
        recv = b.start_receiver()
        b.relay_env(
            RELAY_RETENTION=str(args.retention),
            RELAY_SWEEP_INTERVAL="1",
            RELAY_POLL_MIN_INTERVAL="0.3",
            RELAY_POLL_MAX_INTERVAL="0.5",
        )
        b.start_api()
        b.start_workers(1)
        r = redis_client(b.redis_url)
        await subscribe(b.api_url, recv + "/hook")
        headers = {"authorization": f"Bearer {API_KEY}"}
        started = time.time()
        sent = 0
        next_sample = started
        async with httpx.AsyncClient(base_url=b.api_url, headers=headers, timeout=10) as c:
            while time.time() - started < args.plateau_seconds:
                due = int((time.time() - started) * args.rate)
                while sent < due:
                    body = {"provider": "citedy", "input": {"domain": f"p{sent}.example"}}
                    (await c.post("/v1/runs", json=body)).raise_for_status()
                    sent += 1
                if time.time() >= next_sample:
                    runs = await r.zcard(keys.tenant_runs(TENANT))
                    rows.append([round(time.time() - started), await used(r), runs])
                    next_sample += 2
                await asyncio.sleep(0.02)
        await r.aclose()
    return rows


async def main_async(args: argparse.Namespace) -> None:
    print(table(await per_run(args), ["item", "value"]))
    if args.plateau_seconds > 0:
        rows = await plateau(args)
        print(
            f"\nplateau: {args.rate} runs/s, RELAY_RETENTION={args.retention:g}s, "
            f"{args.plateau_seconds}s"
        )
        print(table(rows, ["t (s)", "used_memory", "runs indexed"]))
        third = max(1, len(rows) // 3)
        middle = [row[1] for row in rows[third : 2 * third]]
        last = [row[1] for row in rows[2 * third :]]
        print(
            f"\nused_memory max, middle third: {max(middle)}; last third: {max(last)} "
            f"({(max(last) - max(middle)) / max(middle):+.1%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--plateau-seconds", type=int, default=60)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--retention", type=float, default=8.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
