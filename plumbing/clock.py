"""Wall-clock time for decisions that cross processes (hold deadlines, opening times)."""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["Clock", "LoopAnchoredClock", "WallClock"]


class Clock(Protocol):
    """Tells the time in ms since the epoch."""

    def now_ms(self) -> int:
        """The current time, ms since the epoch."""
        ...


class WallClock:
    """The system clock."""

    def now_ms(self) -> int:
        """The current time, ms since the epoch."""
        return time.time_ns() // 1_000_000


class LoopAnchoredClock:
    """Wall time that advances with the event loop's clock (so a mock clock drives it).

    Created inside a running loop; ``now_ms`` is the wall time at creation plus the
    loop time elapsed since. Tests use it with trio's ``MockClock`` to move hold
    deadlines forward without sleeping.
    """

    def __init__(self) -> None:
        self._wall0 = time.time_ns() // 1_000_000  # wall time at creation, ms
        self._loop0 = anyio.current_time()  # loop time at creation, s

    def now_ms(self) -> int:
        """Wall time at creation plus loop time elapsed, in ms."""
        return self._wall0 + round((anyio.current_time() - self._loop0) * 1000)
