"""Start-up: keep trying a store that is not reachable yet, for a bounded time.

A supervisor (docker compose, systemd) may start the engine before Redis or
PostgreSQL answers; exiting at once would only make it restart us in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from storage.errors import StorageUnavailable

__all__ = ["retry_until_reachable"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Pause after the first failed attempt, seconds; it doubles up to the longest.
FIRST_PAUSE_S = 0.1
LONGEST_PAUSE_S = 2.0


async def retry_until_reachable(
    store: str, attempt: Callable[[], Awaitable[T]], wait_s: float
) -> T:
    """Await ``attempt()`` until it does not raise StorageUnavailable or ``wait_s`` have passed.

    Each failure within the time logs a warning naming ``store`` (never its URL: it may
    hold a password); the failure at the deadline is raised.
    """
    deadline = anyio.current_time() + wait_s
    pause = FIRST_PAUSE_S
    while True:
        try:
            return await attempt()
        except StorageUnavailable as exc:
            left = deadline - anyio.current_time()
            if left <= 0:
                raise
            logger.warning(
                "%s not reachable yet, trying again for %.0f s more: %s", store, left, exc
            )
        await anyio.sleep(min(pause, left))
        pause = min(2 * pause, LONGEST_PAUSE_S)
