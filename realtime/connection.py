"""A server WebSocket connection that writes frames straight to its socket.

websockets' sans-I/O ``ServerProtocol`` does the opening handshake, parses the
client's frames (pings answered, size limit, closing handshake); this class moves
bytes between it and a non-blocking socket. A frame is written with one
``sock.send`` by the task that produced it, without waking another task: only when
the kernel's buffer is full does the unsent tail wait, and then one flusher task
per backed-up connection waits for the socket to become writable, writes the tail,
and calls ``on_writable`` so that the owner writes whatever queued up meanwhile
(several frames in one write). Server frames are not masked, so a text frame is the
same bytes on every connection: :func:`text_frame` builds it once for all of them.

The same code serves trio and asyncio: :class:`SocketIo` is the runtime's own
``wait_readable`` / ``wait_writable`` (``trio.lowlevel``'s on trio, anyio's, the loop's
reader/writer callbacks, on asyncio), and on trio the connections' tasks are spawned
into a trio nursery, without anyio's wrapper per task. Per connection there is one
task and no task group of its own: a flusher or a close started from sync code runs
in the listener's group, and the socket is announced closing (``notify_closing``)
before it is closed, which ends a flusher still waiting on it. Reading takes no lock
(one flag, an event only when two tasks read at once), a request already there when
the connection is accepted is answered without waiting or a deadline, and a deadline
costs a cancel scope only while it can fire.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import sniffio
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import CLOSED, OPEN
from websockets.server import ServerProtocol

from plumbing.outbox import Outbox

__all__ = [
    "CLOSE_TIMEOUT_S",
    "OPEN_TIMEOUT_S",
    "ServerConnection",
    "SocketIo",
    "serve_connections",
    "text_frame",
]

logger = logging.getLogger(__name__)

#: A client has this long to complete its opening handshake.
OPEN_TIMEOUT_S = 10.0
#: A closing handshake the client does not complete within this is cut short.
CLOSE_TIMEOUT_S = 10.0
#: Most bytes read from a socket at once.
_READ_BYTES = 65536
#: Most connections accepted per wake-up of the listener.
_ACCEPT_BATCH = 64


#: Spawns a task: ``spawn(async_fn, *args)`` (a nursery's or task group's ``start_soon``).
Spawn = Callable[..., object]


@dataclasses.dataclass(frozen=True, slots=True)
class SocketIo:
    """The running runtime's waits on a socket, looked up once per listener rather
    than through anyio's backend lookup on every wait."""

    wait_readable: Callable[[socket.socket], Awaitable[None]]
    wait_writable: Callable[[socket.socket], Awaitable[None]]
    #: Wakes the tasks waiting on a socket about to be closed, with ``closed``.
    notify_closing: Callable[[socket.socket], None]
    closed: tuple[type[BaseException], ...]

    @classmethod
    def current(cls) -> SocketIo:
        """The primitives of the runtime in use."""
        if sniffio.current_async_library() == "trio":
            import trio

            return cls(
                trio.lowlevel.wait_readable,
                trio.lowlevel.wait_writable,
                trio.lowlevel.notify_closing,
                (trio.ClosedResourceError, anyio.ClosedResourceError),
            )
        return cls(
            anyio.wait_readable,
            anyio.wait_writable,
            anyio.notify_closing,
            (anyio.ClosedResourceError,),
        )


@contextlib.asynccontextmanager
async def _spawner() -> AsyncIterator[Spawn]:
    """A task group for the connections: a trio nursery on trio (anyio's task group wraps
    every task it spawns in a handle with a cancel scope and an event of its own)."""
    if sniffio.current_async_library() == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            yield nursery.start_soon
    else:
        async with anyio.create_task_group() as tg:
            yield tg.start_soon


def text_frame(payload: bytes) -> bytes:
    """``payload`` (UTF-8) as one unmasked, unfragmented text frame, as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


class ServerConnection:
    """One accepted WebSocket: ``request`` and ``remote_address`` once open, frames in and out.

    ``recv``, ``send`` and ``close`` behave as websockets' own connections do (a closed
    connection raises :class:`~websockets.exceptions.ConnectionClosed`); ``write`` and
    ``backed_up`` are the direct path.
    """

    def __init__(
        self,
        sock: socket.socket,
        remote_address: Any,
        protocol: ServerProtocol,
        spawn: Spawn,
        io: SocketIo | None = None,
    ) -> None:
        self.remote_address = remote_address  # the peer's (host, port)
        self.protocol = protocol  # handshake, framing, closing handshake
        self.request: Request | None = None  # the opening handshake's request, once received
        self.on_writable: Callable[[], None] | None = None  # called when a backlog was written
        self._sock = sock  # non-blocking, connected
        self._spawn = spawn  # runs the flusher and a close started from sync code
        self._io = io or SocketIo.current()  # the runtime's waits on the socket
        self._outbox = Outbox(sock)  # written at once, or queued behind what the kernel refused
        self._flushing = False  # the flusher task is running
        self._drained: anyio.Event | None = None  # set when the unsent bytes are all written
        self._shutdown_wanted = False  # the protocol asked to end the write side
        self._broken = False  # the socket failed or was shut down: nothing more is written
        self._read_done = False  # the peer's end of the stream (or the socket failed)
        self._reading = False  # a task is reading (recv, or close): others wait their turn
        self._read_turn: anyio.Event | None = None  # set when that read is over, if awaited
        self._messages: deque[str | bytes] = deque()  # received, not yet taken by recv
        self._fragments: list[bytes] = []  # a fragmented message so far
        self._fragmented_text = False  # the fragmented message is text

    # Writing

    @property
    def backed_up(self) -> bool:
        """Bytes are waiting for the socket to become writable: queue, don't write."""
        return self._outbox.pending

    def write(self, data: bytes) -> None:
        """Write frames (see :func:`text_frame`) now, or after what is waiting already.

        Dropped once the connection is closing or broken: no data frame follows a close.
        """
        if self.protocol.state is OPEN:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._broken:
            return
        if not self._outbox.write(data):
            self._break()
        elif self._outbox.pending and not self._flushing:
            self._flushing = True
            self._spawn(self._flush)

    async def _flush(self) -> None:
        """Write the unsent bytes as the socket takes them, then what the owner queued."""
        try:
            while self._outbox.pending and not self._broken:
                await self._io.wait_writable(self._sock)
                if not self._outbox.flush():
                    self._break()
                elif not self._outbox.pending and self.on_writable is not None:
                    self.on_writable()  # may back up again: the loop goes on
            if self._shutdown_wanted and not self._broken:
                self._shutdown_write()
        except self._io.closed:  # the connection ended while its bytes waited: drop them
            self._outbox.clear()
        finally:
            self._flushing = False
            if self._drained is not None:
                self._drained.set()
                self._drained = None

    async def drain(self) -> None:
        """Wait until nothing is left unsent (or the socket failed)."""
        while self._outbox.pending and not self._broken:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    def _write_protocol_output(self) -> None:
        """Write what the protocol has to send: a handshake response, a pong, a close frame."""
        for data in self.protocol.data_to_send():
            if data:
                self._write(data)
            elif self._outbox.pending:
                self._shutdown_wanted = True  # after the unsent bytes
            else:
                self._shutdown_write()

    def _shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        self._broken = True

    def _break(self) -> None:
        """The socket failed: stop writing, and let readers see the end of the stream."""
        self._broken = True
        self._outbox.clear()
        with contextlib.suppress(OSError):  # a task waiting to read wakes to EOF
            self._sock.shutdown(socket.SHUT_RDWR)

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Send one text frame and wait until the kernel took it (websockets' ``send``)."""
        if self.protocol.state is not OPEN:
            raise self.protocol.close_exc
        payload = message.encode() if isinstance(message, str) else message
        self._write(text_frame(payload))
        await self.drain()

    # Reading

    async def recv(self) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary one."""
        while not self._messages:
            if self._read_done or self.protocol.state is CLOSED:
                raise self.protocol.close_exc
            await self._receive()
        return self._messages.popleft()

    async def _receive(self) -> None:
        """Wait for the socket, read once, feed the protocol, answer what it answers.

        One task reads at a time (the handler's ``recv``, or ``close``); another waits
        for that read to end, then reads in turn.
        """
        while self._reading:
            if self._read_turn is None:
                self._read_turn = anyio.Event()
            await self._read_turn.wait()
        if self._read_done:
            return
        self._reading = True
        try:
            await self._io.wait_readable(self._sock)
            data = self._sock.recv(_READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        except self._io.closed:  # the connection ended while this waited (see _release)
            data = b""
        finally:
            self._reading = False
            if self._read_turn is not None:
                self._read_turn.set()
                self._read_turn = None
        self._received(data)

    def _receive_now(self) -> bool:
        """Read what the socket has without waiting; False if it had nothing yet."""
        try:
            data = self._sock.recv(_READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        self._received(data)
        return True

    def _received(self, data: bytes) -> None:
        """Feed the protocol what was read (b"": the end of the stream)."""
        if data:
            self.protocol.receive_data(data)
        else:
            self._read_done = True
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self.request = event
        self._write_protocol_output()
        if self.protocol.state is CLOSED:
            self._read_done = True

    def _frame(self, frame: Frame) -> None:
        """Assemble messages from data frames (the protocol answered control frames)."""
        opcode, data = frame.opcode, bytes(frame.data)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments, self._fragmented_text = [data], opcode is Opcode.TEXT
                return
            self._message(data, text=opcode is Opcode.TEXT)
        elif opcode is Opcode.CONT:
            self._fragments.append(data)
            if frame.fin:
                whole, self._fragments = b"".join(self._fragments), []
                self._message(whole, text=self._fragmented_text)

    def _message(self, data: bytes, *, text: bool) -> None:
        if not text:
            self._messages.append(data)
            return
        try:
            self._messages.append(data.decode())
        except UnicodeDecodeError:
            self.protocol.fail(1007, "invalid UTF-8")

    # Opening and closing

    def handshake_now(self) -> bool | None:
        """:meth:`handshake` if the request is there already (it often is by the time the
        connection is accepted), without waiting or a deadline; None if it is not yet."""
        if self.request is None and not self._receive_now():
            return None
        if self.request is None and not self._read_done and self.protocol.handshake_exc is None:
            return None  # part of it: the rest is waited for
        return self._answer()

    async def handshake(self) -> bool:
        """Read the request and answer it; True if the connection is open."""
        while self.request is None:
            if self._read_done or self.protocol.handshake_exc is not None:
                return False
            await self._receive()
        return self._answer()

    def _answer(self) -> bool:
        if self.request is None:  # no request: the protocol answered with an HTTP error
            return False
        response = self.protocol.accept(self.request)
        if "Server" in response.headers:
            del response.headers["Server"]
        self.protocol.send_response(response)
        self._write_protocol_output()
        return self.protocol.state is OPEN

    def close_soon(self, code: int, reason: str) -> None:
        """Start the closing handshake from code that cannot wait (see :meth:`close`)."""
        self._spawn(self.close, code, reason)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (after anything unsent) and wait for the client's, briefly."""
        if self.protocol.state is OPEN:
            self.protocol.send_close(code, reason)
            self._write_protocol_output()
        if self._read_done:  # the client's close (or end) came first: nothing to wait for
            return
        with anyio.move_on_after(CLOSE_TIMEOUT_S):
            while not self._read_done:
                await self._receive()
        if not self._read_done:  # the client did not answer: cut the connection
            self._read_done = True
            self.protocol.receive_eof()
            self._break()

    def _release(self) -> None:
        """The connection is over and its socket about to be closed: nothing more is read
        or written, and a task still waiting on the socket (a flusher) wakes and ends."""
        self._read_done = True
        self._broken = True
        if self._flushing or self._reading:
            self._io.notify_closing(self._sock)


async def serve_connections(
    listener: socket.socket,
    handler: Callable[[ServerConnection], Awaitable[None]],
    *,
    max_message_bytes: int,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSockets on ``listener`` (non-blocking, listening) until cancelled."""
    io = SocketIo.current()
    async with _spawner() as spawn:
        task_status.started()
        while True:
            await io.wait_readable(listener)
            for _ in range(_ACCEPT_BATCH):
                try:
                    sock, address = listener.accept()
                except BlockingIOError:
                    break
                except OSError:  # out of descriptors, say: the backlog keeps the rest
                    logger.warning("websocket accept failed", exc_info=True)
                    await anyio.sleep(0.1)
                    break
                spawn(_serve_one, sock, address, handler, max_message_bytes, spawn, io)


async def _serve_one(
    sock: socket.socket,
    address: Any,
    handler: Callable[[ServerConnection], Awaitable[None]],
    max_message_bytes: int,
    spawn: Spawn,
    io: SocketIo,
) -> None:
    """Open, hand to ``handler``, close (1000, or 1011 if the handler failed)."""
    ws: ServerConnection | None = None
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws = ServerConnection(sock, address, ServerProtocol(max_size=max_message_bytes), spawn, io)
        opened = ws.handshake_now()
        if opened is None:  # the request is still on its way: wait for it, for so long
            opened = False
            with anyio.move_on_after(OPEN_TIMEOUT_S):
                opened = await ws.handshake()
        if opened:
            code = 1000
            try:
                await handler(ws)
            except ConnectionClosed:
                pass
            except Exception:
                logger.exception("websocket handler failed")
                code = 1011
            await ws.close(code)
        else:  # an HTTP error response, if the protocol wrote one
            with anyio.move_on_after(1):
                await ws.drain()
    except OSError:
        pass
    finally:
        if ws is not None:
            ws._release()
        sock.close()
