"""A WebSocket client for the runtime in use: websockets' trio or asyncio flavour, same API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

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
    url: str, *, local_address: tuple[str, int] | None = None, open_timeout: float = 60
) -> AsyncIterator[WsConnection]:
    """Open a client connection: no compression, no library pings, no proxy lookup."""
    options: dict[str, Any] = {
        "compression": None,
        "ping_interval": None,
        "proxy": None,
        "open_timeout": open_timeout,
    }
    if sniffio.current_async_library() == "trio":
        from websockets.trio.client import connect

        if local_address is not None:  # trio binds a host; the kernel picks the port
            options["local_address"] = local_address[0]
        async with connect(url, **options) as trio_ws:
            yield trio_ws
    else:
        from websockets.asyncio.client import connect as aconnect

        if local_address is not None:
            options["local_addr"] = local_address
        async with aconnect(url, **options) as asyncio_ws:
            yield asyncio_ws
