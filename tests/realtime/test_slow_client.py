"""A client that stops reading is disconnected with 1008 instead of growing the server's memory."""

from __future__ import annotations

import anyio
import pytest
import sniffio

from realtime.session import ClientSession


class _StuckTransport:
    """A connection whose peer never reads: every send blocks until released."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.release = anyio.Event()

    async def send(self, message: bytes, *, text: bool | None = None) -> None:
        await self.release.wait()
        self.sent.append(message)


class _TrioTransport(_StuckTransport):
    """websockets.trio connections close with ``aclose`` (and have no ``close``)."""

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


class _AsyncioTransport(_StuckTransport):
    """websockets.asyncio connections close with ``close``."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


@pytest.mark.anyio
async def test_client_too_far_behind_is_closed_with_1008() -> None:
    """Past max_pending queued messages the session is dropped and the socket closed with 1008."""
    transport = (
        _TrioTransport() if sniffio.current_async_library() == "trio" else _AsyncioTransport()
    )
    session = ClientSession(transport, max_pending=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(session.run_writer)
        for i in range(10):
            session.send(f"message {i}".encode())
        assert session.dropped
        transport.release.set()  # the first send completes; the writer then sees the drop
        with anyio.fail_after(5):
            while transport.closed is None:  # noqa: ASYNC110 (the transport records the close)
                await anyio.sleep(0.01)
    assert transport.closed == (1008, "client too slow")
    assert len(transport.sent) <= 5  # at most what was queued before the bound
