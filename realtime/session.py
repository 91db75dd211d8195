"""One connected client: what it waits for, and what waits to be written to it.

Frames are written to the connection by the task that produces them (a prompt by
the hub's reader, a position by its ticker), with no task switch: the connection
hands them to the kernel at once. Only when the client is backed up (the kernel's
buffer for it is full) does anything queue here, and then in order of worth:

- other messages (prompts, outcomes, answers) in order, up to ``max_pending``; a
  client that falls further behind is disconnected with 1008 (it can resume with its
  token) rather than growing memory;
- then the newest position update only (older ones are coalesced away, and none is
  written once the client was decided);
- heartbeats never queue: a frame on its way proves the connection alive.

When the connection can take more, everything queued goes out in one write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import anyio

from realtime.connection import text_frame

__all__ = ["ClientSession", "Heartbeats", "Transport", "WireBacklog"]


class WireBacklog:
    """Messages (prompts, outcomes, answers) queued on a server's backed-up connections:
    position rounds leave them the frames (realtime/hub.py)."""

    def __init__(self) -> None:
        self.messages = 0  # queued in sessions' outboxes, not yet written


class Transport(Protocol):
    """The part of a WebSocket connection a session uses (realtime/connection.py)."""

    on_writable: Callable[[], None] | None  # set by the session: write what queued

    @property
    def backed_up(self) -> bool:
        """Bytes wait for the socket: frames written now would wait behind them."""
        ...

    def write(self, data: bytes) -> None:
        """Write frames now, or after the bytes waiting already."""
        ...

    def close_soon(self, code: int, reason: str) -> None:
        """Start the closing handshake."""
        ...

    async def drain(self) -> None:
        """Wait until no byte waits for the socket."""
        ...


class ClientSession:
    """A client's connection and its place (once it has joined or resumed)."""

    def __init__(
        self,
        transport: Transport,
        *,
        max_pending: int = 32,
        backlog: WireBacklog | None = None,
    ) -> None:
        self.transport = transport  # the WebSocket
        self._backlog = backlog or WireBacklog()  # the server's count of queued messages
        self.event_id: str | None = None  # set by join/resume
        self.seq = 0  # ticket seq once in line
        self.place = 0  # place in line (position = place - serving); 0 while in the pre-queue
        self.waiting = False  # in line, not yet decided
        self.last_position = -1  # the last position sent
        self.seats_may_return = False  # the last seats_may_return sent
        self.sold_out_for_now = False  # the last sold_out_for_now sent
        self.wait_basis = ""  # what the last wait sent rested on (a WaitBasis value)
        self.next_position_at = 0.0  # loop time before which no position update is due
        self._max_pending = max_pending  # outbox bound before disconnecting
        #: framed messages waiting while backed up, each with what to call once it is
        #: written (a prompt's place in the delivery backlog; None for other messages)
        self._outbox: deque[tuple[bytes, Callable[[], None] | None]] = deque()
        self._position: bytes | None = None  # newest framed position update, coalesced
        self.dropped = False  # disconnected for falling behind
        self.last_sent_at = anyio.current_time()  # loop time of the last frame written
        transport.on_writable = self._write_queued

    @property
    def backed_up(self) -> bool:
        """Frames are waiting for the client: new ones queue (see the module's policy)."""
        return bool(self._outbox) or self._position is not None or self.transport.backed_up

    def send(self, message: bytes, *, on_written: Callable[[], None] | None = None) -> None:
        """Write a message (JSON), or queue it; disconnect the client if it is too far behind.

        ``on_written`` (a prompt's place in the delivery backlog, realtime/delivery.py)
        is called once, right after the frame is handed to the connection.
        """
        self.send_frame(text_frame(message), on_written=on_written)

    def send_frame(self, frame: bytes, *, on_written: Callable[[], None] | None = None) -> None:
        """:meth:`send` for a frame already built (one frame shared by many clients)."""
        if self.dropped:
            return
        if not self.backed_up:
            self._write(frame)
            if on_written is not None:
                on_written()
        elif len(self._outbox) < self._max_pending:
            self._outbox.append((frame, on_written))
            self._backlog.messages += 1
        else:
            self.dropped = True
            self._backlog.messages -= len(self._outbox)
            self._outbox.clear()
            self._position = None
            self.transport.close_soon(1008, "client too slow")

    def send_position(self, position: int, message: bytes) -> None:
        """Write a position update (JSON), or replace any queued one with it."""
        self.last_position = position
        if self.dropped:
            return
        if self.backed_up:
            self._position = text_frame(message)
        else:
            self._write(text_frame(message))

    def send_heartbeat(self, frame: bytes) -> None:
        """Write a heartbeat frame unless frames are on their way already."""
        if not self.backed_up and not self.dropped:
            self._write(frame)

    async def flush(self) -> None:
        """Wait until everything queued was written (or the connection broke)."""
        while self.backed_up and not self.dropped:
            await self.transport.drain()
            if self.transport.backed_up:
                continue
            if self._outbox or self._position is not None:  # the connection closed under it
                return

    def _write_queued(self) -> None:
        """The connection can take more: everything queued in one write, messages first."""
        frames = [frame for frame, _ in self._outbox]
        written = [on_written for _, on_written in self._outbox if on_written is not None]
        self._backlog.messages -= len(frames)
        self._outbox.clear()
        if self._position is not None:
            if self.waiting:  # a prompt or outcome makes positions moot
                frames.append(self._position)
            self._position = None
        if frames:
            self._write(b"".join(frames))
        for on_written in written:
            on_written()  # the delivery hook: this prompt is written

    def _write(self, data: bytes) -> None:
        """Every frame to the client is written here, one or several at a time."""
        self.transport.write(data)
        self.last_sent_at = anyio.current_time()


class Heartbeats:
    """Sends a heartbeat to every connection that was quiet for a whole interval.

    Any frame proves a connection alive, so clients hearing positions or outcomes
    get none. One task scans every connection once per ``tick_s`` (a few
    microseconds each) rather than one sleeping task per connection: in trio each
    timed wake-up costs ~100 µs, which at 10,000 connections and 15 s is 7 % of a
    core spent waking up. The frame is built once and written as is to every one.
    """

    def __init__(self, message: bytes, interval_s: float, *, tick_s: float = 1.0) -> None:
        self._frame = text_frame(message)  # the heartbeat, framed once for every connection
        self._interval_s = interval_s  # quiet time before a heartbeat
        self._tick_s = min(tick_s, interval_s)  # scan period (heartbeats are up to this late)
        self._sessions: set[ClientSession] = set()  # connections served here

    def add(self, session: ClientSession) -> None:
        """Start keeping ``session`` alive."""
        self._sessions.add(session)

    def discard(self, session: ClientSession) -> None:
        """Stop: the connection is closing."""
        self._sessions.discard(session)

    async def run(self) -> None:
        """Scan every ``tick_s`` until cancelled."""
        while True:
            await anyio.sleep(self._tick_s)
            now = anyio.current_time()
            for session in self._sessions:
                if now - session.last_sent_at >= self._interval_s:
                    session.send_heartbeat(self._frame)
                    session.last_sent_at = now  # written, or frames on their way: counts as sent
