"""Pull the relay's events instead of receiving webhooks: for a consumer that cannot expose a
URL (behind a firewall, a batch job). A cursor loop that survives restarts.

    pip install httpx
    RELAY_URL=http://127.0.0.1:8000 RELAY_API_KEY=... python examples/pull_consumer.py

`GET /v1/events?after=<cursor>&wait=25` answers at once when there are newer events, or holds
the request up to `wait` seconds until one is recorded. Each item is exactly the webhook body
plus its `id` (the same id as the webhook's `webhook-id`, so pull and push can be mixed and
de-duplicated). The cursor is saved to a file after each page is handled, so a restarted
consumer goes on where it stopped; a crash between handling a page and saving the cursor
hands that page over again, so handling must be idempotent by `id` (as for webhooks). Events
are kept for RELAY_RETENTION (30 days by default): a consumer stopped longer loses the oldest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

Handler = Callable[[dict[str, Any]], None]


def load_cursor(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def save_cursor(path: Path, cursor: str) -> None:
    """Atomically: a crash leaves the old cursor or the new one, never half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(cursor)
    os.replace(tmp, path)


def consume(
    base_url: str,
    api_key: str,
    cursor_file: Path,
    handle: Handler,
    *,
    wait: float = 25,
    limit: int = 100,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Handle every event after the saved cursor, page by page, until `stop()` says so (checked
    between pages). Network errors and 5xx are retried with backoff; a 4xx is a bug: raised."""
    cursor = load_cursor(cursor_file)
    backoff = 1.0
    headers = {"authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=wait + 10) as client:
        while not stop():
            try:
                response = client.get(
                    "/v1/events", params={"after": cursor, "limit": limit, "wait": wait}
                )
                if response.status_code >= 500:
                    raise httpx.HTTPStatusError(
                        "retry", request=response.request, response=response
                    )
            except httpx.HTTPError:
                time.sleep(backoff)
                backoff = min(backoff * 2, 30)
                continue
            response.raise_for_status()
            backoff = 1.0
            page = response.json()
            for event in page["data"]:
                handle(event)
            if page["next_cursor"] != cursor:
                cursor = page["next_cursor"]
                save_cursor(cursor_file, cursor)


def main() -> None:
    def show(event: dict[str, Any]) -> None:
        run = event["data"].get("run") or {}
        print(event["id"], event["type"], run.get("id", ""), run.get("status", ""), flush=True)

    consume(
        os.environ.get("RELAY_URL", "http://127.0.0.1:8000"),
        os.environ["RELAY_API_KEY"],
        Path(os.environ.get("CURSOR_FILE", "relay-cursor.txt")),
        show,
    )


if __name__ == "__main__":
    main()
