"""A webhook receiver for the run relay, ready to adapt: Starlette, verified with the
`standardwebhooks` library, processed once per `webhook-id`, with each run's `sequence` checked.

    pip install starlette uvicorn standardwebhooks
    WEBHOOK_SECRET=whsec_... python examples/receiver.py      # listens on :8080/webhooks

The relay delivers at least once: a retry after a timeout, or a crash between your 2xx and the
relay's record of it, sends the same `webhook-id` again. So the receiver remembers the ids it has
processed (here in SQLite, next to the work it does) and answers 2xx to a repeat without doing
the work twice. Per run, events arrive in order; `data.run.sequence` (1, 2, 3...) lets a
receiver check: a sequence at or below the last one seen is stale and skipped; a gap means a
status filtered out by the subscription, or a delivery dead-lettered and not yet recovered.

Answer fast (the relay waits 15 s by default) and answer 2xx only once the event is safely
stored; anything else is retried.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Handler = Callable[[dict[str, Any]], None]


class Store:
    """Processed webhook ids and the last sequence per run, in one SQLite file."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("CREATE TABLE IF NOT EXISTS processed (webhook_id TEXT PRIMARY KEY)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, sequence INTEGER)"
        )

    def process_once(self, webhook_id: str, event: dict[str, Any], handle: Handler) -> str:
        """'processed', 'duplicate' (this id was done before) or 'stale' (an older sequence
        than one already processed for the run). The id, the run's sequence and the work
        commit together, so a crash never leaves one without the other."""
        run = (event.get("data") or {}).get("run") or {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute(
                    "SELECT 1 FROM processed WHERE webhook_id = ?", (webhook_id,)
                ).fetchone():
                    self._db.execute("ROLLBACK")
                    return "duplicate"
                self._db.execute("INSERT INTO processed VALUES (?)", (webhook_id,))
                outcome = "processed"
                if run.get("id") and run.get("sequence"):
                    row = self._db.execute(
                        "SELECT sequence FROM runs WHERE run_id = ?", (run["id"],)
                    ).fetchone()
                    if row and run["sequence"] <= row[0]:
                        outcome = "stale"
                    else:
                        self._db.execute(
                            "INSERT OR REPLACE INTO runs VALUES (?, ?)",
                            (run["id"], run["sequence"]),
                        )
                if outcome == "processed":
                    handle(event)  # your work: in this transaction if it writes here too
                self._db.execute("COMMIT")
                return outcome
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


def create_app(
    secret: str, db_path: str = "receiver.db", handle: Handler | None = None
) -> Starlette:
    """`secret`: the subscription's `whsec_…`. After a rotate-secret the relay signs with the
    new and the old secret side by side for a grace period, so switch at leisure."""
    verifier = Webhook(secret)
    store = Store(db_path)

    def default(event: dict[str, Any]) -> None:
        run = (event.get("data") or {}).get("run") or {}
        print(event["type"], run.get("id", ""), run.get("status", ""), flush=True)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            # Checks the signature and that webhook-timestamp is within 5 minutes.
            event = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return JSONResponse({"error": "bad_signature"}, status_code=400)
        outcome = store.process_once(request.headers["webhook-id"], event, handle or default)
        return JSONResponse({"outcome": outcome})

    app = Starlette(routes=[Route("/webhooks", receive, methods=["POST"])])
    app.state.store = store
    return app


def main() -> None:
    import uvicorn

    app = create_app(os.environ["WEBHOOK_SECRET"], os.environ.get("RECEIVER_DB", "receiver.db"))
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
