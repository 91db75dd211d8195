"""Entering a runtime: SIGINT / SIGTERM stop the program cleanly on trio and on asyncio."""

from __future__ import annotations

import os
import signal

import anyio
import anyio.lowlevel
import pytest

from plumbing.runtime import RUNTIMES, run

pytestmark = pytest.mark.once


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_cancels_main_and_runs_its_cleanup(runtime: str, signum: int) -> None:
    """A signal cancels main, its finally blocks run, and run() returns None."""
    cleaned: list[str] = []

    async def main() -> int:
        try:
            os.kill(os.getpid(), signum)
            await anyio.sleep(30)
        finally:
            cleaned.append(runtime)
        return 1

    assert run(main, runtime) is None
    assert cleaned == [runtime]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_result_of_main_is_returned(runtime: str) -> None:
    """Without a signal, run() returns what main returned."""

    async def main() -> int:
        await anyio.lowlevel.checkpoint()
        return 7

    assert run(main, runtime) == 7


def test_unknown_runtime_is_refused() -> None:
    """Only trio and asyncio are runtimes."""
    with pytest.raises(ValueError, match="unknown runtime"):
        run(anyio.lowlevel.checkpoint, "curio")
