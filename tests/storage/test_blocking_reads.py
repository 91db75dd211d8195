"""The store's blocking reads end when their caller is cancelled, however soon after they
began: a server (or a test's system) shutting down does not wait out a read's block."""

from __future__ import annotations

import time

import anyio
import pytest

from storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

#: Far longer than any cancellation may take, even on a busy machine.
BLOCK_MS = 20_000


async def test_a_blocking_read_cancelled_as_it_starts_ends_at_once(
    redis_store: RedisStore, event_id: str
) -> None:
    """Cancelled at once, or after a few of the drivers' steps (while the driver is still
    taking a pooled connection), each blocking read ends long before its block would."""
    reads = {
        "read_notify": lambda: redis_store.read_notify(event_id, "0-0", BLOCK_MS),
        "wait_for_line": lambda: redis_store.wait_for_line(event_id, 0, BLOCK_MS),
        "wait_for_joins": lambda: redis_store.wait_for_joins({event_id: 0}, BLOCK_MS),
    }
    with anyio.fail_after(3 * BLOCK_MS / 1000):  # the whole test, should a read wait it out
        for name, read in reads.items():
            for checkpoints in range(12):
                started = time.monotonic()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    for _ in range(checkpoints):
                        await anyio.lowlevel.checkpoint()
                    tg.cancel_scope.cancel()
                elapsed = time.monotonic() - started
                assert elapsed < BLOCK_MS / 1000 / 4, (name, checkpoints, elapsed)
