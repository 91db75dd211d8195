"""A WebSocket connection for the runtime in use: websockets' trio or asyncio flavour, same API."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import sniffio

__all__ = ["WsConnection", "connect_ws"]


class WsConnection(Protocol):
    """What clients of the waiting room use of a connection (both flavours have it)."""

    async def send(self, message: bytes | str, *, text: bool | None = None) -> None:
        """Send one frame."""
        ...

    async def recv(self, decode: bool | None = None) -> Any:
        """Receive one message."""
        ...


@asynccontextmanager
async def connect_ws(
    url: str,
    *,
    local_address: tuple[str, int] | None = None,
    open_timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[WsConnection]:
    """Open a client connection: no compression, no library pings, no proxy lookup.

    ``headers``: sent with the handshake (as a proxy in front adds ``X-Forwarded-For``)."""
    options: dict[str, Any] = {
        "compression": None,
        "ping_interval": None,
        "proxy": None,
        "open_timeout": open_timeout,
    }
    if headers:
        options["additional_headers"] = headers
    if sniffio.current_async_library() == "trio":
        from websockets.trio.client import connect

        if local_address is not None:  # trio binds a host; the kernel picks the port
            options["local_address"] = local_address[0]
        async with connect(url, **options) as trio_ws:
            yield trio_ws
    else:
        from websockets.asyncio.client import connect as aconnect

        if local_address is not None:
            options["sock"] = await _connected_socket(url, local_address[0], open_timeout)
        async with aconnect(url, **options) as asyncio_ws:
            yield asyncio_ws


async def _connected_socket(url: str, source_host: str, timeout_s: float) -> socket.socket:
    """A TCP socket from ``source_host`` connected to ``url``'s host and port (asyncio).

    asyncio's ``local_addr`` binds before connecting, so the kernel picks the source
    port at bind time, searching the ports in use on that address: at 15,000
    connections that search took two thirds of a bench process. With
    IP_BIND_ADDRESS_NO_PORT the port is picked at connect, per destination, as trio's
    ``local_address`` does.
    """
    import asyncio

    from websockets.uri import parse_uri

    uri = parse_uri(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if hasattr(socket, "IP_BIND_ADDRESS_NO_PORT"):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_host, 0))
        with anyio.fail_after(timeout_s):
            await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
    except BaseException:
        sock.close()
        raise
    return sock
