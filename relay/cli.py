"""The `relay` command: dev, api, worker, check, simulate, erase-tenant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from relay.config import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from relay.api.app import create_app
    from relay.logging import configure

    settings = _settings()
    configure(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    from workers.settings import run

    _settings()
    run()
    return 0


def cmd_check(_: argparse.Namespace) -> int:
    from workers.heartbeat import healthy

    ok = healthy()
    print("healthy" if ok else "unhealthy: no recent worker heartbeat")
    return 0 if ok else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from relay.simulators.app import serve

    serve(args.host, args.port, access_log=not args.quiet)
    return 0


def cmd_demo_receiver(args: argparse.Namespace) -> int:
    import uvicorn

    from relay.demo_receiver import create_app

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
    from relay.providers.registry import build_providers
    from relay.redis_conn import connect

    settings = _settings()

    async def go() -> int:
        r = connect(settings.redis_url or "redis://127.0.0.1:6379")
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


def cmd_dev(args: argparse.Namespace) -> int:
    from relay.dev import run_dev

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
    p = sub.add_parser("demo-receiver", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret-file", required=True)
    p.set_defaults(func=cmd_demo_receiver)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
