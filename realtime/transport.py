"""Start the waiting room's WebSocket server (realtime/connection.py) on the runtime in use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from plumbing.listen import listening_socket
from realtime.connection import ServerConnection, serve_connections

__all__ = ["serve_websockets"]


async def serve_websockets(
    handler: Callable[[ServerConnection], Awaitable[None]],
    host: str,
    port: int,
    *,
    max_message_bytes: int = 4096,
    reuse_port: bool = False,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started`` gets the bound port.

    No compression (small frames; ~3x less memory per connection) and no keepalive
    pings (they cost a core at 15k idle clients: the handler's heartbeats suffice).
    ``reuse_port`` lets other processes serve the same port (plumbing/listen.py).
    """
    sock = listening_socket(host, port, reuse_port=reuse_port)
    with sock:
        bound = sock.getsockname()[1]
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: serve_connections(
                    sock, handler, max_message_bytes=max_message_bytes, task_status=task_status
                )
            )
            task_status.started(bound)
