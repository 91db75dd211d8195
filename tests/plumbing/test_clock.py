"""LoopAnchoredClock: wall time that moves with the event loop's (mock) clock."""

from __future__ import annotations

import time

import anyio
import pytest
import trio
import trio.testing
from hypothesis import example, given
from hypothesis import strategies as st

from plumbing.clock import LoopAnchoredClock, WallClock

pytestmark = [pytest.mark.once, pytest.mark.mock_clock(autojump_threshold=0)]


@pytest.mark.anyio
async def test_sleep_five_seconds_advances_5000_ms() -> None:
    """anyio.sleep(5) on the mock clock moves now_ms forward by exactly 5000."""
    clock = LoopAnchoredClock()
    before = clock.now_ms()
    await anyio.sleep(5)
    assert clock.now_ms() - before == 5_000


@pytest.mark.anyio
async def test_starts_at_wall_time_and_stands_still_without_loop_time() -> None:
    """At creation now_ms is the wall time; it does not move while the mock clock stands still."""
    lo = time.time_ns() // 1_000_000
    clock = LoopAnchoredClock()
    hi = time.time_ns() // 1_000_000
    first = clock.now_ms()
    assert lo <= first <= hi
    await anyio.lowlevel.checkpoint()
    assert clock.now_ms() == first


@pytest.mark.anyio
async def test_successive_sleeps_accumulate() -> None:
    """Several sleeps add up exactly in now_ms."""
    clock = LoopAnchoredClock()
    start = clock.now_ms()
    for seconds, total in [(1, 1_000), (60, 61_000), (0.5, 61_500), (3_600, 3_661_500)]:
        await anyio.sleep(seconds)
        assert clock.now_ms() - start == total


@given(
    offset_s=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    elapsed_ms=st.integers(min_value=0, max_value=10**7),
)
@example(offset_s=1.0, elapsed_ms=1)
@example(offset_s=8189.035009917622, elapsed_ms=5_000)
def test_advances_by_whole_milliseconds_at_any_loop_time(offset_s: float, elapsed_ms: int) -> None:
    """Wherever the loop clock stands, sleeping n ms moves now_ms by exactly n."""
    mock = trio.testing.MockClock(autojump_threshold=0)
    mock.jump(offset_s)

    async def main() -> int:
        clock = LoopAnchoredClock()
        before = clock.now_ms()
        await anyio.sleep(elapsed_ms / 1000)
        return clock.now_ms() - before

    assert trio.run(main, clock=mock) == elapsed_ms


def test_wall_clock_is_the_system_time() -> None:
    """WallClock reads the system clock in ms since the epoch."""
    lo = time.time_ns() // 1_000_000
    now = WallClock().now_ms()
    hi = time.time_ns() // 1_000_000
    assert lo <= now <= hi
