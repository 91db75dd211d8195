"""Run the ASGI app on hypercorn, in the flavour of the runtime in use."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import sniffio
from hypercorn.config import Config

from plumbing.listen import BACKLOG, listening_socket

__all__ = ["serve_http"]


async def serve_http(
    app: Any,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status.started`` gets the bound port.

    The socket is bound and listening before hypercorn starts (handed over by file
    descriptor), so the port is known and accepting at once; ``reuse_port`` lets
    other processes serve the same port (plumbing/listen.py).
    """
    sock = listening_socket(host, port, reuse_port=reuse_port)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) it from here
    config.backlog = BACKLOG
    config.keep_alive_max_requests = 1_000_000  # don't recycle busy keep-alive connections
    config.keep_alive_timeout = 75  # longer than clients' idle pools keep connections
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    if sniffio.current_async_library() == "trio":
        import trio
        from hypercorn.trio import serve

        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
            task_status.started(port)
            await anyio.sleep_forever()
    else:
        from hypercorn.asyncio import serve as aserve

        # hypercorn's asyncio server must be stopped through its shutdown trigger, not
        # cancelled: it runs shielded and stops gracefully once this task is cancelled.
        config.graceful_timeout = 1
        shutdown = anyio.Event()

        async def run() -> None:
            with anyio.CancelScope(shield=True):
                await aserve(app, config, shutdown_trigger=shutdown.wait)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            task_status.started(port)  # listening already: connections wait in the backlog
            try:
                await anyio.sleep_forever()
            finally:
                shutdown.set()
