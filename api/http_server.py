"""Run the ASGI app on hypercorn, in the flavour of the runtime in use."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import sniffio
from hypercorn.config import Config

__all__ = ["serve_http"]


async def serve_http(
    app: Any,
    host: str,
    port: int,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status.started`` gets the bound port."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = 4096  # the default 100 drops connections under a burst
    config.keep_alive_max_requests = 1_000_000  # don't recycle busy keep-alive connections
    config.keep_alive_timeout = 75  # longer than clients' idle pools keep connections
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    if sniffio.current_async_library() == "trio":
        import trio
        from hypercorn.trio import serve

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                lambda task_status: serve(app, config, task_status=task_status)
            )
            task_status.started(int(binds[0].rsplit(":", 1)[1]))
            await anyio.sleep_forever()
    else:
        import socket

        from hypercorn.asyncio import serve as aserve

        if port == 0:  # pick the port now so it can be reported
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
            config.bind = [f"{host}:{port}"]
        # hypercorn's asyncio server must be stopped through its shutdown trigger, not
        # cancelled: it runs shielded and stops gracefully once this task is cancelled.
        config.graceful_timeout = 1
        shutdown = anyio.Event()

        async def run() -> None:
            with anyio.CancelScope(shield=True):
                await aserve(app, config, shutdown_trigger=shutdown.wait)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _wait_until_listening(host, port)  # serve() has no started signal
            task_status.started(port)
            try:
                await anyio.sleep_forever()
            finally:
                shutdown.set()


async def _wait_until_listening(host: str, port: int, timeout_s: float = 10.0) -> None:
    """Return once ``host:port`` accepts connections (a probe connection, closed at once)."""
    probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    with anyio.fail_after(timeout_s):
        while True:
            try:
                stream = await anyio.connect_tcp(probe_host, port)
            except OSError:
                await anyio.sleep(0.01)
            else:
                await stream.aclose()
                return
