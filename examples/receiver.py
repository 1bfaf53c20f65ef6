"""A webhook receiver for the run relay, ready to adapt: Starlette, verified with the
`standardwebhooks` library, processed once per `webhook-id` (never dropped for its `sequence`).

    pip install starlette uvicorn standardwebhooks
    WEBHOOK_SECRET=whsec_... python examples/receiver.py      # listens on :8080/webhooks

The relay delivers at least once: a retry after a timeout, or a crash between your 2xx and the
relay's record of it, sends the same `webhook-id` again. So the receiver remembers the ids it has
processed (here in SQLite, next to the work it does) and answers 2xx to a repeat without doing
the work twice. That id, and only that id, decides whether an event is new.

Per run, events arrive in order and `data.run.sequence` counts 1, 2, 3... A *lower* sequence than
one already processed is not stale when its id was never processed: it is an event that was
dead-lettered and then recovered (`POST /v1/subscriptions/{id}/recover`) or redelivered, and it
must be processed like any other (answered `processed_late`). What the receiver must not do is
let it move the run's current status backwards: `Store.latest()` keeps the highest sequence
processed per run and a late event does not lower it; a handler that keeps a run's current
status compares `data.run.sequence` the same way. A gap
(sequence 2 then 4) means a status the subscription's `filter` left out, or a delivery that was
dead-lettered (a later event is only sent once the earlier one succeeded or was dead-lettered);
recover it, and it arrives late, as above.

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
    """Processed webhook ids and the highest sequence processed per run, in one SQLite file."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("CREATE TABLE IF NOT EXISTS processed (webhook_id TEXT PRIMARY KEY)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, sequence INTEGER)"
        )

    def latest(self, run_id: str) -> int:
        """The highest sequence processed for `run_id` (0 if none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT sequence FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def process_once(self, webhook_id: str, event: dict[str, Any], handle: Handler) -> str:
        """'processed', 'processed_late' or 'duplicate'.

        Only the `webhook-id` decides: an id processed before is a 'duplicate' (answered 2xx,
        the work not done again); any other event is handed to `handle`, whatever its sequence.
        'processed_late' is an event older than one already processed for its run (a recovered
        or redelivered dead letter): it was handled, and the run's highest sequence did not go
        backwards. The id, the run's highest sequence and the work commit together, so a crash
        never leaves one without the other."""
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
                    if row and run["sequence"] < row[0]:
                        outcome = "processed_late"
                    else:
                        self._db.execute(
                            "INSERT OR REPLACE INTO runs VALUES (?, ?)",
                            (run["id"], run["sequence"]),
                        )
                # Your work: in this transaction if it writes here too. For a 'processed_late'
                # event, record it (a history, a timeline) but keep the run's current status.
                handle(event)
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
        seq = f"sequence {run['sequence']}" if run.get("sequence") else ""
        print(event["type"], run.get("id", ""), run.get("status", ""), seq, flush=True)

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
