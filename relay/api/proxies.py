"""Who the client is, behind an ingress: RELAY_TRUSTED_PROXIES (CIDRs) names the hops whose
`X-Forwarded-For` and `X-Forwarded-Proto` are believed. Anyone else's are ignored, so a client
cannot claim another address (to dodge the console's login throttle) or https (to be handed a
cookie meant for https only).

The client is the rightmost address of `X-Forwarded-For` that is not itself a trusted proxy
(each proxy appends the peer it saw; only the entries added by trusted hops can be believed).
The scheme is taken from `X-Forwarded-Proto` (its last value) when the peer is trusted. This
replaces uvicorn's own proxy-header handling (`proxy_headers=False` in relay/cli.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


class TrustedProxies:
    def __init__(self, app: ASGIApp, cidrs: Iterable[str]) -> None:
        self.app = app
        self.networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.networks:
            client = scope.get("client")
            if client and _trusted(client[0], self.networks):
                scope = dict(scope)
                headers = {k.lower(): v for k, v in scope.get("headers", [])}
                forwarded = headers.get(b"x-forwarded-for")
                if forwarded:
                    hops = [h.strip() for h in forwarded.decode("latin-1").split(",") if h.strip()]
                    real = client[0]
                    for hop in reversed(hops):
                        real = hop
                        if not _trusted(hop, self.networks):
                            break
                    scope["client"] = (real, 0)
                proto = headers.get(b"x-forwarded-proto")
                if proto:
                    value = proto.decode("latin-1").split(",")[-1].strip().lower()
                    if value in ("http", "https"):
                        scope["scheme"] = (
                            value
                            if scope["type"] == "http"
                            else ("wss" if value == "https" else "ws")
                        )
        await self.app(scope, receive, send)
