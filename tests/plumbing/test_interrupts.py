"""Ctrl-C inside ``open_interrupt`` is a request to wrap up, not a cancellation."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import anyio
import pytest

from plumbing.interrupts import open_interrupt
from plumbing.runtime import run
from tests.conftest import RUNTIME


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """On asyncio, SIGINT is left to Python's default handler once a receiver closes."""
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, previous[0])
    signal.signal(signal.SIGTERM, previous[1])


def test_a_signal_sets_the_event_and_cancels_nothing() -> None:
    """SIGINT and SIGTERM during the block set the event; the program carries on to its
    own result instead of being stopped by ``run``."""

    async def main() -> str:
        async with open_interrupt() as interrupted:
            for signum in (signal.SIGINT, signal.SIGTERM):
                os.kill(os.getpid(), signum)
                with anyio.fail_after(10):
                    await interrupted.wait()
            await anyio.sleep(0.05)  # still running: nothing was cancelled
            return "wrapped up"

    assert run(main, RUNTIME) == "wrapped up"


def test_without_the_block_a_signal_stops_the_program() -> None:
    """The contrast: outside ``open_interrupt``, ``run`` stops the program on SIGINT."""

    async def main() -> str:
        os.kill(os.getpid(), signal.SIGINT)
        await anyio.sleep(10)
        return "not reached"

    assert run(main, RUNTIME) is None
