"""The demo receiver `relay dev` starts: verifies each webhook like a subscriber would and prints
one line per event, so a newcomer sees the whole flow in the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.delivery.signing import verify


def create_app(secret_file: Path) -> Starlette:
    async def receive(request: Request) -> Response:
        body = await request.body()
        secret = await anyio.Path(secret_file).read_text() if secret_file.exists() else ""  # noqa: ASYNC240
        secret = secret.strip()
        ok = bool(secret) and verify(secret, request.headers, body)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        run = (event.get("data") or {}).get("run") or {}
        mark = "verified" if ok else "BAD SIGNATURE"
        print(
            f"[demo receiver] {mark} {request.headers.get('webhook-id')} {event.get('type')} "
            f"{run.get('id', '')} {run.get('provider', '')} "
            f"{run.get('previous_status') or '-'} -> {run.get('status', '')} "
            f"(sequence {run.get('sequence', '-')})",
            flush=True,
        )
        if not ok:
            return JSONResponse({"error": "bad_signature"}, status_code=400)
        return Response(status_code=204)

    return Starlette(routes=[Route("/webhooks", receive, methods=["POST"])])
