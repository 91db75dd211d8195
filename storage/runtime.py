"""Start the program on a runtime: trio (default) or asyncio.

This is the one place that knows how each runtime is entered; everything else is
written against anyio and runs on either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

__all__ = ["RUNTIMES", "run"]

T = TypeVar("T")

#: Runtimes the program can run on.
RUNTIMES = ("trio", "asyncio")


def run(main: Callable[[], Awaitable[T]], runtime: str = "trio") -> T:
    """Run ``main`` to completion on ``runtime``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    options = {"use_uvloop": True} if runtime == "asyncio" else {}
    return anyio.run(main, backend=runtime, backend_options=options)
