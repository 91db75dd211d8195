"""Writing to a client that stops reading, over a real socket: frames queue only once the
kernel's buffer is full, prompts then go before positions, positions are coalesced, and a
client too far behind is closed with 1008 instead of growing the server's memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from realtime.connection import ServerConnection
from realtime.session import ClientSession
from realtime.transport import serve_websockets
from tests.realtime.wsclient import raw_websocket

pytestmark = pytest.mark.anyio

#: Padding of each bulk message: a few hundred fill the kernel's buffers on loopback.
PAD = "x" * 16_000
#: Longest a test waits for anything, seconds.
BOUND_S = 30


class Msg(msgspec.Struct):
    kind: str
    n: int
    pad: str = ""


@asynccontextmanager
async def _serving(handler: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_websockets(handler, "127.0.0.1", 0, task_status=task_status)
        )
        yield f"ws://127.0.0.1:{port}/"
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _lazy_client(url: str) -> AsyncIterator[Any]:
    """A client that stops reading from the socket once one message waits unread."""
    async with raw_websocket(url, max_queue=1, max_size=None) as ws:
        yield ws


async def _read_all(ws: Any) -> tuple[list[Msg], int | None]:
    """Every message until the server closes, and the close code it sent."""
    messages = []
    with anyio.fail_after(BOUND_S):
        try:
            while True:
                messages.append(msgspec.json.decode(await ws.recv(), type=Msg))
        except ConnectionClosed as exc:
            return messages, exc.rcvd.code if exc.rcvd is not None else None


def _bulk(n: int) -> bytes:
    return msgspec.json.encode(Msg("bulk", n, PAD))


async def _back_up(session: ClientSession) -> int:
    """Write bulk messages until the client is backed up; how many were written."""
    n = 0
    with anyio.fail_after(BOUND_S):
        while not session.backed_up:
            session.send(_bulk(n))
            n += 1
            await anyio.lowlevel.checkpoint()
    return n


async def test_client_too_far_behind_is_closed_with_1008() -> None:
    """Past max_pending queued messages the session is dropped and the socket closed with 1008;
    nothing queued past the bound is ever written."""
    written: list[int] = []
    done = anyio.Event()

    async def handler(ws: ServerConnection) -> None:
        session = ClientSession(ws, max_pending=4)
        n = await _back_up(session)
        while not session.dropped:
            session.send(_bulk(n))
            n += 1
        written.append(n)
        done.set()
        await anyio.sleep_forever()  # the close is the session's doing

    async with _serving(handler) as url, _lazy_client(url) as ws:
        with anyio.fail_after(BOUND_S):
            await done.wait()
        messages, code = await _read_all(ws)
    assert code == 1008
    assert [m.n for m in messages] == list(range(len(messages)))  # in order, none lost between
    assert len(messages) <= written[0] - 1  # the message that overflowed the outbox never went


async def test_backed_up_prompts_go_before_positions_and_positions_are_coalesced() -> None:
    """While the client is backed up, a message written after a position update still reaches
    it first, and only the newest of the queued position updates is written at all."""

    async def handler(ws: ServerConnection) -> None:
        session = ClientSession(ws, max_pending=8)
        session.waiting = True
        await _back_up(session)
        session.send_position(10, msgspec.json.encode(Msg("position", 10)))
        session.send_position(9, msgspec.json.encode(Msg("position", 9)))
        session.send(msgspec.json.encode(Msg("prompt", 0)))
        session.send_position(8, msgspec.json.encode(Msg("position", 8)))
        with anyio.fail_after(BOUND_S):
            await session.flush()

    async with _serving(handler) as url, _lazy_client(url) as ws:
        await anyio.sleep(0.5)  # the server backs up against the client that does not read
        messages, code = await _read_all(ws)
    assert code == 1000
    tail = [(m.kind, m.n) for m in messages if m.kind != "bulk"]
    assert tail == [("prompt", 0), ("position", 8)]


async def test_a_decided_client_gets_no_queued_position() -> None:
    """A position update queued while backed up is dropped once the client is decided."""

    async def handler(ws: ServerConnection) -> None:
        session = ClientSession(ws, max_pending=8)
        session.waiting = True
        await _back_up(session)
        session.send_position(5, msgspec.json.encode(Msg("position", 5)))
        session.waiting = False
        session.send(msgspec.json.encode(Msg("prompt", 0)))
        with anyio.fail_after(BOUND_S):
            await session.flush()

    async with _serving(handler) as url, _lazy_client(url) as ws:
        await anyio.sleep(0.5)
        messages, _ = await _read_all(ws)
    assert [(m.kind, m.n) for m in messages if m.kind != "bulk"] == [("prompt", 0)]
