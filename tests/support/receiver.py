"""A recording webhook receiver (a test tool, like the simulators): every POST to /hook/{name} is
recorded; a per-name plan says how to answer (status codes, hangs, Retry-After, huge bodies)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from relay.delivery.webhook_schemas import body_validator


@cache
def _body_validator() -> Any:
    """Built from the document the ingress serves (relay.api.app.openapi_document)."""
    from relay.api.app import openapi_document

    return body_validator(openapi_document())


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: bytes
    answer: Any = None

    @property
    def succeeded(self) -> bool:
        """Answered 2xx (a hang answers 204 after its sleep, which may be past the timeout)."""
        return isinstance(self.answer, int) and 200 <= self.answer < 300

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    hits: dict[str, list[Hit]] = field(default_factory=lambda: defaultdict(list))
    plans: dict[str, list[Any]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""
    #: Bytes of `("stream",)` bodies handed to the server per name, and names whose stream ended
    #: because the client hung up.
    streamed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hung_up: set[str] = field(default_factory=set)

    def url(self, name: str) -> str:
        return f"{self.base_url}/hook/{name}"

    def plan(self, name: str, *answers: Any, default: Any = 204) -> None:
        """Answers consumed in order: an int status, ("hang", s), ("retry_after", code, s),
        ("big", nbytes), ("stream",) (a 200 whose body never ends: only a client that stops
        reading ever finishes), ("redirect", url); then `default` for ever after (which may be
        a callable returning one of those, for randomised subscribers)."""
        with self.lock:
            self.plans[name] = list(answers)
            self.defaults[name] = default

    def got(self, name: str) -> list[Hit]:
        self.assert_bodies_valid(name)
        with self.lock:
            return list(self.hits[name])

    # --- Schema check: every body received is validated against the published schema
    # (`webhooks` in /openapi.json); a test reading what it received fails on a body that does
    # not fit, and the session fixture fails at the end if any body anywhere did not.
    schema_errors: list[tuple[str, str]] = field(default_factory=list)

    def check_schema(self, name: str, body: bytes) -> None:
        try:
            found = _body_validator().iter_errors(json.loads(body))
            errors = [f"{e.json_path}: {e.message[:300]}" for e in found]
        except ValueError as exc:
            errors = [f"not JSON: {exc}"]
        if errors:
            with self.lock:
                self.schema_errors += [(name, e) for e in errors[:5]]

    def assert_bodies_valid(self, name: str | None = None) -> None:
        with self.lock:
            bad = [e for n, e in self.schema_errors if name is None or n == name]
        assert not bad, f"bodies received at {name or 'the receiver'} break the schema: {bad}"

    # --- end of the schema check

    def events(self, name: str) -> list[dict[str, Any]]:
        return [h.json for h in self.got(name)]

    async def handle(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        self.check_schema(name, body)
        with self.lock:
            plan = self.plans.get(name) or []
            answer = plan.pop(0) if plan else self.defaults.get(name, 204)
        if callable(answer):
            answer = answer()
        with self.lock:
            self.hits[name].append(Hit(time.time(), dict(request.headers), body, answer))
        if isinstance(answer, int):
            return Response(status_code=answer)
        kind = answer[0]
        if kind == "hang":
            await asyncio.sleep(answer[1])
            return Response(status_code=204)
        if kind == "retry_after":
            return Response(status_code=answer[1], headers={"retry-after": str(answer[2])})
        if kind == "big":
            return Response(b"x" * answer[1], status_code=200)
        if kind == "stream":
            return StreamingResponse(self._endless(request, name), status_code=200)
        if kind == "redirect":
            return Response(status_code=302, headers={"location": answer[1]})
        raise ValueError(f"unknown plan {answer!r}")

    async def _endless(self, request: Request, name: str) -> AsyncIterator[bytes]:
        chunk = b"x" * 65536
        try:
            # uvicorn keeps accepting writes after a hang-up, so the stream asks.
            while not await request.is_disconnected():
                with self.lock:
                    self.streamed[name] += len(chunk)
                yield chunk
        finally:
            with self.lock:
                self.hung_up.add(name)

    def app(self) -> Starlette:
        _body_validator()  # built now: building it on the first POST would delay that answer
        return Starlette(routes=[Route("/hook/{name}", self.handle, methods=["POST"])])
