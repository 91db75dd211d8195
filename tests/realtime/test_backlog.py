"""The waiting room's listener keeps a deep backlog on either runtime.

asyncio listens again on a socket it is given, with a backlog of 100 unless told
otherwise; under a burst of joins the kernel then drops connections. Here the loop is
kept busy (blocking connects from its own thread) so that nothing is accepted, and
every connection must still complete into the backlog.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack

import anyio
import pytest

from plumbing.listen import BACKLOG
from realtime.transport import serve_websockets

pytestmark = pytest.mark.anyio

#: Well past asyncio's default of 100, well within ours.
BURST = 300


async def _never_called(ws: object) -> None:
    raise AssertionError("nothing is accepted while the loop is blocked")


async def test_a_burst_waits_in_the_backlog_while_nothing_is_accepted() -> None:
    assert BURST < BACKLOG
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_websockets(
                _never_called, "127.0.0.1", 0, task_status=task_status
            )
        )
        await anyio.sleep(0.1)  # the server task reaches its listening state
        completed = 0
        with ExitStack() as stack:
            for _ in range(BURST):  # blocking: the loop accepts nothing meanwhile
                client = stack.enter_context(socket.socket())
                client.settimeout(1.0)
                try:
                    client.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
                completed += 1
        tg.cancel_scope.cancel()
    assert completed == BURST
