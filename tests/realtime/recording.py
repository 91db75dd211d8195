"""A session transport that records the messages written to it, for tests on a mock clock.

It takes every write at once (never backed up) and splits what it is given back into
the frames' payloads, as a client would read them.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio


def payloads(data: bytes) -> list[bytes]:
    """The payloads of the unmasked text frames in ``data`` (as a server writes them)."""
    out = []
    i = 0
    while i < len(data):
        assert data[i] == 0x81, "one unfragmented text frame"
        n, i = data[i + 1], i + 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        out.append(data[i : i + n])
        i += n
    return out


class RecordingTransport:
    """Records (loop time, payload) of every message written."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []
        self.on_writable: Callable[[], None] | None = None
        self.closed: tuple[int, str] | None = None

    @property
    def backed_up(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        now = anyio.current_time()
        self.sent.extend((now, payload) for payload in payloads(data))

    def close_soon(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def drain(self) -> None:
        return
