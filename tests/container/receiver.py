"""The webhook receiver of the container end-to-end test, run inside the image by e2e.py.

It is tests/support/receiver.py (records every POST to /hook/{name}, answers 204) plus one read
endpoint, GET /received/{name}, that hands the recorded headers and raw bodies to the test,
which verifies each signature with the `standardwebhooks` reference library: the relay's own
signing code never checks its own work here. Only the image's Python and its Starlette and
uvicorn are used, so the receiver needs nothing the production image does not carry.
"""

from __future__ import annotations

import argparse
import base64

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.support.receiver import Receiver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    receiver = Receiver()

    async def received(request: Request) -> JSONResponse:
        hits = receiver.got(request.path_params["name"])
        return JSONResponse(
            [
                {"headers": h.headers, "body": base64.b64encode(h.body).decode()}
                for h in hits
            ]
        )

    app = receiver.app()
    app.add_route("/received/{name}", received, methods=["GET"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
