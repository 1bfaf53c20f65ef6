"""The `relay` command: dev, api, worker, check, simulate, erase-tenant, keys, reencrypt, jobs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay.config import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _redis_url(settings: Settings, command: str) -> str:
    """REDIS_URL, or the process stops naming it (every command but `relay dev` needs it)."""
    try:
        return settings.require_redis_url(command)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from relay import collector, event_loop, tracing
    from relay.api.app import create_app
    from relay.logging import configure

    settings = _settings()
    _redis_url(settings, "api")
    configure(settings.log_format, settings.log_level)
    tracing.setup("api")  # before the app is made: it installs the server spans if on
    app = create_app(settings)
    collector.settle()  # what start-up made frozen, young collections rarer (relay/collector.py)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop" if event_loop.choose(settings.event_loop) == event_loop.UVLOOP else "asyncio",
        log_level="warning",
        access_log=False,
        # X-Forwarded-* are believed only from RELAY_TRUSTED_PROXIES (relay/api/proxies.py).
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    from relay import event_loop
    from workers.settings import run

    settings = _settings()
    _redis_url(settings, "worker")
    event_loop.install(settings.event_loop)  # before arq makes its loop
    run()
    return 0


def cmd_check(_: argparse.Namespace) -> int:
    from workers.heartbeat import healthy

    settings = _settings()
    ok = healthy(settings.heartbeat_file, settings.check_max_age)
    print("healthy" if ok else "unhealthy: no recent worker heartbeat")
    return 0 if ok else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from relay.devtools.simulators.app import serve

    serve(args.host, args.port, access_log=not args.quiet)
    return 0


def cmd_demo_receiver(args: argparse.Namespace) -> int:
    import uvicorn

    from relay.devtools.demo_receiver import create_app

    uvicorn.run(
        create_app(Path(args.secret_file)),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


def cmd_erase_tenant(args: argparse.Namespace) -> int:
    import asyncio

    from relay.ops.deps import Deps
    from relay.ops.tenant_data import erase_tenant
    from relay.store.connection import connect
    from relay.vendors.registry import build_providers

    settings = _settings()

    async def go() -> int:
        r = connect(_redis_url(settings, "erase-tenant"))
        try:
            deps = Deps(r, settings, build_providers(settings))
            counted = await erase_tenant(deps, args.tenant, dry_run=args.dry_run)
        finally:
            await r.aclose()
        verb = "would erase" if args.dry_run else "erased"
        print(
            f"tenant {args.tenant}: {verb} {counted.runs} runs, {counted.subscriptions} "
            f"subscriptions, {counted.watches} watches, {counted.other_keys} other keys"
        )
        return 0

    return asyncio.run(go())


def _ops_deps(settings: Settings, command: str) -> Any:
    from relay.ops.deps import Deps
    from relay.store.connection import connect
    from relay.vendors.registry import build_providers

    redis = connect(_redis_url(settings, command))
    return Deps(redis, settings, build_providers(settings))


def cmd_keys(args: argparse.Namespace) -> int:
    """`relay keys create|list|revoke`: the same operations as /v1/admin/api-keys."""
    import asyncio
    import json

    from pydantic import ValidationError

    from relay.ops import apikeys
    from relay.ops.errors import OpError, invalid_from
    from relay.ops.inputs import ApiKeyCreate

    settings = _settings()

    async def go() -> int:
        deps = _ops_deps(settings, "keys")
        try:
            if args.action == "create":
                try:
                    body = ApiKeyCreate(tenant=args.tenant, description=args.description)
                except ValidationError as exc:
                    raise invalid_from(exc) from None
                made = await apikeys.create(deps, body)
                print(json.dumps({**made.api_key, "key": made.key}, indent=2))
            elif args.action == "list":
                print(json.dumps(await apikeys.list_all(deps), indent=2))
            else:
                await apikeys.revoke(deps, args.key_id)
                print(f"revoked {args.key_id}")
            return 0
        except OpError as exc:
            print(f"relay keys: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await deps.redis.aclose()

    return asyncio.run(go())


def cmd_reencrypt(_: argparse.Namespace) -> int:
    import asyncio

    from relay.ops.reencrypt import reencrypt

    settings = _settings()

    async def go() -> int:
        deps = _ops_deps(settings, "reencrypt")
        try:
            report = await reencrypt(deps.redis, settings.relay_encryption_key)
        except ValueError as exc:
            print(f"relay reencrypt: {exc}", file=sys.stderr)
            return 2
        finally:
            await deps.redis.aclose()
        print(f"scanned {report.scanned} keys, re-sealed {report.resealed} values")
        return 0

    return asyncio.run(go())


def cmd_jobs(args: argparse.Namespace) -> int:
    """`relay jobs list|retry`: work set aside after RELAY_POISON_AFTER failures in a row (starts,
    polls, deliveries, watches), one JSON line per member; put one, or all, back."""
    import asyncio
    import json

    from relay.ops import jobs
    from relay.ops.errors import OpError

    settings = _settings()

    async def go() -> int:
        deps = _ops_deps(settings, "jobs")
        try:
            if args.action == "list":
                for item in await jobs.list_set_aside(deps, args.kind, args.limit, args.batch):
                    print(json.dumps(item.public()))
                return 0
            if args.all:
                done = await jobs.retry_all(deps, args.kind, args.batch)
            elif args.kind and args.member:
                done = int(await jobs.retry(deps, args.kind, args.member))
            else:
                print("relay jobs retry: give KIND MEMBER, or --all", file=sys.stderr)
                return 2
            print(f"retried {done}")
            return 0
        except OpError as exc:
            print(f"relay jobs: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await deps.redis.aclose()

    return asyncio.run(go())


def cmd_dev(args: argparse.Namespace) -> int:
    from relay.devtools.dev import run_dev

    return run_dev(port=args.port, fresh=args.fresh)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dev", help="everything embedded, for a first look")
    p.add_argument("--port", type=int, default=8000, help="the api port (others follow it)")
    p.add_argument("--fresh", action="store_true", help="forget the state of earlier runs")
    p.set_defaults(func=cmd_dev)
    p = sub.add_parser("api", help="the HTTP ingress")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_api)
    sub.add_parser("worker", help="one arq worker process").set_defaults(func=cmd_worker)
    sub.add_parser("check", help="worker liveness probe").set_defaults(func=cmd_check)
    p = sub.add_parser("simulate", help="the vendor simulators alone")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("erase-tenant", help="erase all of one tenant's data (operator)")
    p.add_argument("tenant")
    p.add_argument("--dry-run", action="store_true", help="count what would be erased")
    p.set_defaults(func=cmd_erase_tenant)
    p = sub.add_parser("keys", help="make, list or revoke tenants' API keys")
    actions = p.add_subparsers(dest="action", required=True)
    made = actions.add_parser("create", help="make a key (printed once)")
    made.add_argument("tenant")
    made.add_argument("--description", default="")
    actions.add_parser("list", help="the keys made at run time (no key values)")
    gone = actions.add_parser("revoke", help="revoke a key now")
    gone.add_argument("key_id")
    p.set_defaults(func=cmd_keys)
    sub.add_parser(
        "reencrypt", help="re-seal every stored secret under the first RELAY_ENCRYPTION_KEY"
    ).set_defaults(func=cmd_reencrypt)
    p = sub.add_parser("jobs", help="see and bring back work set aside after repeated failures")
    actions = p.add_subparsers(dest="action", required=True)
    listed = actions.add_parser("list", help="set-aside members, one JSON line each")
    listed.add_argument("--kind", choices=["start", "poll", "deliver", "watch"])
    listed.add_argument("--limit", type=int, default=1000)
    listed.add_argument("--batch", type=int, default=100, help="members read per round trip")
    again = actions.add_parser("retry", help="put a member (KIND MEMBER) or --all back, due now")
    again.add_argument("kind", nargs="?", choices=["start", "poll", "deliver", "watch"])
    again.add_argument("member", nargs="?")
    again.add_argument("--all", action="store_true", help="every member (of KIND, if given)")
    again.add_argument("--batch", type=int, default=100, help="members read per round trip")
    p.set_defaults(func=cmd_jobs)
    p = sub.add_parser("demo-receiver", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret-file", required=True)
    p.set_defaults(func=cmd_demo_receiver)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
