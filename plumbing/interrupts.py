"""Ctrl-C as a request to wrap up rather than a cancellation.

``plumbing.runtime.run`` cancels the whole program on SIGINT or SIGTERM. A command
that has something worth saying when stopped (the sale's partial summary) opens
``open_interrupt`` instead: while the block runs, the signals set an event and
cancel nothing, so the command can stop its work, report, and return its own code.
The receiver opened last takes the signals on both runtimes, and it stays open for
the whole block: on asyncio, closing it leaves SIGINT to Python's default handler
(a second Ctrl-C during shutdown is then a ``KeyboardInterrupt``).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

__all__ = ["open_interrupt"]


@asynccontextmanager
async def open_interrupt() -> AsyncIterator[anyio.Event]:
    """Yield an event set by the first SIGINT or SIGTERM received during the block."""
    interrupted = anyio.Event()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                async for _ in signals:
                    interrupted.set()

            tg.start_soon(watch)
            try:
                yield interrupted
            finally:
                tg.cancel_scope.cancel()
