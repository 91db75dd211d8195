"""websockets' own client, on the runtime the test runs on (its trio or asyncio flavour)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sniffio


@asynccontextmanager
async def raw_websocket(url: str, **options: Any) -> AsyncIterator[Any]:
    """A client connection to ``url`` with websockets' ``connect`` options: no compression
    and no keepalive pings unless ``options`` say otherwise."""
    options = {"compression": None, "ping_interval": None, **options}
    if sniffio.current_async_library() == "trio":
        from websockets.trio.client import connect as tconnect

        async with tconnect(url, **options) as ws:
            yield ws
    else:
        from websockets.asyncio.client import connect as aconnect

        async with aconnect(url, **options) as ws:
            yield ws
