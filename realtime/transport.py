"""Start the websockets server on the runtime in use (its trio or asyncio flavour)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import sniffio

from plumbing.listen import BACKLOG, listening_socket

__all__ = ["close_websocket", "serve_websockets"]


async def serve_websockets(
    handler: Callable[[Any], Awaitable[None]],
    host: str,
    port: int,
    *,
    max_message_bytes: int = 4096,
    reuse_port: bool = False,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started`` gets the bound port.

    Compression is off (small frames; ~3x less memory per connection) and the
    library's keepalive pings are off (they cost a core at 15k idle clients).
    ``reuse_port`` lets other processes serve the same port (plumbing/listen.py).
    """
    options: dict[str, Any] = {
        "compression": None,
        "ping_interval": None,
        "max_size": max_message_bytes,
        "max_queue": 4,
        "server_header": None,
    }
    sock = listening_socket(host, port, reuse_port=reuse_port)
    bound = sock.getsockname()[1]
    if sniffio.current_async_library() == "trio":
        import trio
        from websockets.trio.server import serve

        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve(
                    handler, listeners=[listener], task_status=task_status, **options
                )
            )
            task_status.started(bound)
            await anyio.sleep_forever()
    else:
        from websockets.asyncio.server import serve as aserve

        # asyncio listens again on a given socket, with a backlog of 100 unless told.
        async with aserve(handler, sock=sock, backlog=BACKLOG, **options):
            task_status.started(bound)
            await anyio.sleep_forever()


async def close_websocket(ws: Any, code: int, reason: str) -> None:
    """Close a server connection of either flavour (trio's is ``aclose``, asyncio's ``close``)."""
    closer = ws.aclose if sniffio.current_async_library() == "trio" else ws.close
    await closer(code, reason)
