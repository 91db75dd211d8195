"""Run the asyncio drivers (redis.asyncio, asyncpg) from whichever loop the app runs on.

On the trio runtime the drivers run inside trio through a trio-asyncio loop; on the
asyncio runtime they are awaited directly. Every crossing is counted: it costs
~70 µs of CPU on trio, so callers cross once per batch, never once per client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sniffio

from storage.metrics import BRIDGE_CROSSINGS

__all__ = ["Bridge", "open_bridge"]

T = TypeVar("T")


class Bridge:
    """Calls asyncio coroutine functions from the current runtime."""

    def __init__(self, loop: Any | None) -> None:
        self._loop = loop  # the trio-asyncio loop, or None on a native asyncio loop

    @property
    def runtime(self) -> str:
        """``"trio"`` or ``"asyncio"``."""
        return "asyncio" if self._loop is None else "trio"

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)`` on the drivers' loop."""
        BRIDGE_CROSSINGS.inc()
        if self._loop is None:
            return await fn(*args)
        import trio_asyncio

        result: T = await trio_asyncio.aio_as_trio(fn, loop=self._loop)(*args)
        return result

    async def call_blocking(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``call`` for a call that waits (a blocking read): it ends as soon as the caller
        is cancelled, however soon after it began.

        trio-asyncio cancels the drivers' task once; redis-py may swallow that cancellation
        (landing while it checks a pooled connection under a zero timeout, it is taken for
        the timeout) and the read then waits out its whole block. Here the cancellation is
        delivered again until the call ends. (On asyncio, anyio already does so.)
        """
        if self._loop is None:
            BRIDGE_CROSSINGS.inc()
            return await fn(*args)
        return await self.call(_cancelled_firmly, fn, *args)


async def _cancelled_firmly(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await ``fn(*args)`` (on asyncio); once cancelled, cancel it until it has ended."""
    inner = asyncio.ensure_future(fn(*args))
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        while not inner.done():
            inner.cancel()
            await asyncio.wait({inner}, timeout=0.05)
        if not inner.cancelled():
            inner.exception()  # retrieved: the caller was cancelled, not told of it
        raise


@asynccontextmanager
async def open_bridge() -> AsyncIterator[Bridge]:
    """Open a bridge for the running loop (a trio-asyncio loop on trio)."""
    if sniffio.current_async_library() != "trio":
        yield Bridge(None)
        return
    import trio_asyncio

    running = trio_asyncio.current_loop.get()
    if running is not None:
        yield Bridge(running)
        return
    async with trio_asyncio.open_loop() as loop:
        yield Bridge(loop)
