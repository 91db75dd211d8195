"""Start the program on a runtime: trio (default) or asyncio with uvloop.

This is the one place that knows how each runtime is entered; everything else is
written against anyio and runs on either. SIGINT and SIGTERM cancel the program
cleanly, so every ``finally`` and context manager (embedded servers too) runs.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

__all__ = ["RUNTIMES", "run"]

T = TypeVar("T")

#: Runtimes the program can run on.
RUNTIMES = ("trio", "asyncio")


def run(main: Callable[[], Awaitable[T]], runtime: str = "trio") -> T | None:
    """Run ``main`` to completion on ``runtime``; None if a signal stopped it first."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    options = {"use_uvloop": True} if runtime == "asyncio" else {}
    return anyio.run(_until_signal, main, backend=runtime, backend_options=options)


async def _until_signal(main: Callable[[], Awaitable[T]]) -> T | None:
    result: T | None = None

    async def run_main() -> None:
        nonlocal result
        result = await main()
        tg.cancel_scope.cancel()

    async def watch_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()  # main starts only once signals are caught
            async for _ in signals:
                tg.cancel_scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        await tg.start(watch_signals)
        tg.start_soon(run_main)
    return result
