"""Bytes for a non-blocking socket: written at once while the kernel takes them, queued
in order behind what it did not.

Both ends of the WebSocket (the servers' connections and the buyers' client) write a
frame with one ``send`` and queue only what the kernel's buffer refused; the owner waits
for the socket to become writable and calls :meth:`Outbox.flush`. The queue is a
``bytearray``: appending is amortised constant time and a partial write removes its
bytes from the front without copying the rest, so thousands of frames queued on one
backed-up socket cost what they weigh.
"""

from __future__ import annotations

import socket

__all__ = ["Outbox"]


class Outbox:
    """The write side of one non-blocking, connected socket.

    :meth:`write` and :meth:`flush` answer False when the socket failed (the caller
    stops writing); nothing is written after that, and what was queued is dropped.
    """

    __slots__ = ("_sock", "_unsent")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._unsent = bytearray()  # what the kernel did not take yet, in order

    @property
    def pending(self) -> bool:
        """Bytes wait for the socket to become writable (new ones queue behind them)."""
        return bool(self._unsent)

    def write(self, data: bytes) -> bool:
        """Write ``data`` now, as far as the kernel takes it, or queue it behind what
        waits already; False when the socket failed."""
        if self._unsent:
            self._unsent += data
            return True
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        if sent < len(data):
            self._unsent += memoryview(data)[sent:]
        return True

    def flush(self) -> bool:
        """Write what is queued, as far as the kernel takes it now; False when the
        socket failed."""
        if not self._unsent:
            return True
        try:
            sent = self._sock.send(self._unsent)
        except BlockingIOError:
            return True
        except OSError:
            self.clear()
            return False
        del self._unsent[:sent]
        return True

    def clear(self) -> None:
        """Drop what is queued (the connection ended, or its socket failed)."""
        self._unsent.clear()
