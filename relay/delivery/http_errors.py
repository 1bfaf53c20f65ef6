"""aiohttp's failures as httpx's errors, so callers of the outbound client (relay/delivery/
http_client.py) handle one family of errors whichever engine sent the request.

httpx_aiohttp's own table reports a refused connection as `ConnectTimeout`, which would put
"timeout" in the delivery log for a receiver that is simply down: here each aiohttp error gets
its closest httpx class, most specific first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx


class BlockedDestination(httpx.TransportError):
    """The destination is private, loopback, link-local or metadata: nothing was sent.

    A TransportError so callers that already treat connection failures as "delivery failed"
    handle it without a special case; its message never contains the URL or its credentials.
    """


def translate(exc: BaseException) -> type[httpx.TransportError]:
    """The httpx error class for an aiohttp (or timeout) failure, most specific first."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, TimeoutError):  # SocketTimeoutError, ServerTimeoutError, bare timeouts
        return httpx.ReadTimeout
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return httpx.ReadError
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol
    if isinstance(exc, aiohttp.ClientConnectionError):
        return httpx.NetworkError
    return httpx.TransportError


def remap(exc: Exception, request: httpx.Request) -> httpx.TransportError | None:
    """A correctly classified httpx error for `exc`, or None to let it propagate as is."""
    if isinstance(exc, BlockedDestination):
        return BlockedDestination(str(exc), request=request)
    # httpx_aiohttp raises httpx errors chained to the aiohttp original; classify the original.
    origin = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    if isinstance(origin, BlockedDestination):
        return BlockedDestination(str(origin), request=request)
    if isinstance(origin, aiohttp.ClientError | TimeoutError):
        return translate(origin)(str(origin) or type(origin).__name__, request=request)
    return None


class RemappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            mapped = remap(exc, self._request)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        await self._inner.aclose()
