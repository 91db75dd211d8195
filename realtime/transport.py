"""Start the websockets server on the runtime in use (its trio or asyncio flavour)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import sniffio

__all__ = ["close_websocket", "serve_websockets"]


async def serve_websockets(
    handler: Callable[[Any], Awaitable[None]],
    host: str,
    port: int,
    *,
    max_message_bytes: int = 4096,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started`` gets the bound port.

    Compression is off (small frames; ~3x less memory per connection) and the
    library's keepalive pings are off (they cost a core at 15k idle clients).
    """
    options: dict[str, Any] = {
        "compression": None,
        "ping_interval": None,
        "max_size": max_message_bytes,
        "max_queue": 4,
        "server_header": None,
    }
    if sniffio.current_async_library() == "trio":
        import trio
        from websockets.trio.server import serve

        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve(
                    handler, port, host=host, backlog=4096, task_status=task_status, **options
                )
            )
            task_status.started(server.listeners[0].socket.getsockname()[1])
            await anyio.sleep_forever()
    else:
        from websockets.asyncio.server import serve as aserve

        async with aserve(handler, host, port, backlog=4096, **options) as aserver:
            task_status.started(next(iter(aserver.sockets)).getsockname()[1])
            await anyio.sleep_forever()


async def close_websocket(ws: Any, code: int, reason: str) -> None:
    """Close a server connection of either flavour (trio's is ``aclose``, asyncio's ``close``)."""
    closer = ws.aclose if sniffio.current_async_library() == "trio" else ws.close
    await closer(code, reason)
