"""A client WebSocket connection that reads and writes its socket itself, on trio or asyncio.

websockets' sans-I/O ``ClientProtocol`` does the opening handshake, builds the masked
frames, parses the server's (pings answered, size limit, closing handshake); this
module moves bytes between it and a non-blocking socket, as the servers'
``realtime/connection.py`` does for their side. A frame is written with one
``sock.send`` by the task that sends it; only when the kernel's buffer is full does
that task wait for the socket to become writable. A read is one ``sock.recv`` fed to
the protocol, which may hold many messages: :meth:`ClientConnection.recv` hands them
out without touching the socket again. There is no task per connection beside the
caller's, and no lock or cancel scope per frame: a load generator holding 50,000 of
these spends per message about what a server spends.

The same code runs on trio and asyncio, but for how a read is waited for: on trio the
reader waits with ``trio.lowlevel.wait_readable`` and then reads; on asyncio the loop
calls the connection back when data arrives, registered once for the connection's life
(``anyio.wait_readable`` would register and unregister the socket on every wait), and
the callback reads at once, waking the reader if one waits. ``wss://`` URLs (TLS) go
through websockets' own client for the runtime.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import sniffio
from websockets.client import ClientProtocol
from websockets.exceptions import ConcurrencyError, InvalidMessage
from websockets.frames import Frame, Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import CLOSED, CONNECTING, OPEN
from websockets.uri import WebSocketURI, parse_uri

from plumbing.outbox import Outbox

__all__ = ["CLOSE_TIMEOUT_S", "ClientConnection", "WsConnection", "connect_ws"]

#: A closing handshake the server does not complete within this is cut short.
CLOSE_TIMEOUT_S = 10.0
#: Most bytes read from a socket at once.
_READ_BYTES = 65536
#: asyncio stops reading a connection with this many messages not taken yet (and reads
#: again once they all are): a reader that does not keep up is not buffered without end.
_PAUSE_AT = 256


class WsConnection(Protocol):
    """What clients of the waiting room use of a connection (this module's, and websockets')."""

    async def send(self, message: bytes | str, *, text: bool | None = None) -> None:
        """Send one frame."""
        ...

    async def recv(self, decode: bool | None = None) -> Any:
        """Receive one message."""
        ...


class ClientConnection:
    """One open client WebSocket: ``send``, ``recv`` and ``close`` as websockets' own
    connections have them (a closed connection raises
    :class:`~websockets.exceptions.ConnectionClosed`). Made by :func:`connect_ws`."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: ClientProtocol,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.protocol = protocol  # handshake, framing, closing handshake
        self.response: Response | None = None  # the handshake's answer, once received
        self._sock = sock  # non-blocking, connected
        self._outbox = Outbox(sock)  # written at once, or queued behind what the kernel refused
        self._broken = False  # the socket failed: nothing more is written
        self._read_done = False  # the server's end of the stream (or the socket failed)
        self._reading = False  # a task is reading (one at a time)
        self._messages: deque[tuple[bytes, bool]] = deque()  # (payload, is text), not yet taken
        self._fragments: list[bytes] = []  # a fragmented message so far
        self._fragmented_text = False  # the fragmented message is text
        #: asyncio: the loop reads the socket as data arrives (:meth:`_on_readable`), one
        #: registration for the connection's life; trio: the reader waits, then reads.
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None  # a reader waiting for data
        self._watching = False  # the loop's reader callback is registered
        self._watch()

    # Writing

    def _write(self, data: bytes) -> None:
        """Write now, or queue after what is waiting already (see :meth:`_drain`)."""
        if not self._broken and not self._outbox.write(data):
            self._break()

    async def _drain(self) -> None:
        """Wait for the socket to take the unsent bytes (only when the kernel was full)."""
        while self._outbox.pending and not self._broken:
            await anyio.wait_writable(self._sock)
            if not self._outbox.flush():
                self._break()

    def _write_protocol_output(self) -> None:
        """Write what the protocol has to send: the request, frames, a pong, a close."""
        for data in self.protocol.data_to_send():
            if data:
                self._write(data)
            # b"": the protocol ends its write side. A client never does before the
            # server closed the connection, and the socket is closed then.

    def _break(self) -> None:
        """The socket failed: stop writing, and let the reader see the end of the stream."""
        self._broken = True
        self._outbox.clear()

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Send one frame: text for a ``str`` (or ``text=True``), else binary; returns
        once the kernel took it."""
        if self.protocol.state is not OPEN:
            await self._raise_closed()
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        elif text:
            self.protocol.send_text(message)
        else:
            self.protocol.send_binary(message)
        self._write_protocol_output()
        if self._outbox.pending:
            await self._drain()

    # Reading

    async def recv(self, decode: bool | None = None) -> Any:
        """The next message: ``str`` for a text frame and ``bytes`` for a binary one;
        ``decode=False``: text as ``bytes`` too, ``decode=True``: binary as ``str``."""
        while not self._messages:
            if self._read_done or self.protocol.state is CLOSED:
                await self._raise_closed()
            await self._receive()
        data, is_text = self._messages.popleft()
        if decode is False or (not is_text and not decode):
            return data
        try:
            return data.decode()
        except UnicodeDecodeError:
            self.protocol.fail(1007, "invalid UTF-8")
            self._write_protocol_output()
            await self._raise_closed()

    async def _raise_closed(self) -> None:
        """Raise ``ConnectionClosed``, once the server closed the connection (or failed)."""
        if self.protocol.state is not CLOSED:  # closing: the server's close, then its EOF
            with anyio.move_on_after(CLOSE_TIMEOUT_S):
                while not self._read_done:
                    await self._receive(keep_messages=False)
            if not self._read_done:
                self._read_done = True
                self.protocol.receive_eof()
        raise self.protocol.close_exc

    async def _receive(self, *, keep_messages: bool = True) -> None:
        """Wait for a read from the socket (into the protocol, answered); ``keep_messages``
        False: drop the messages (closing)."""
        if self._reading:
            raise ConcurrencyError("another task is reading from this connection")
        self._reading = True
        try:
            if self._loop is None:
                await anyio.wait_readable(self._sock)
                self._read_once()
            else:
                self._watch()  # if paused with many messages queued, now all taken
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            self._reading = False
        if not keep_messages:
            self._messages.clear()

    def _read_once(self) -> None:
        """One ``recv`` into the protocol; write what the protocol answers."""
        if self._read_done:
            return
        try:
            data = self._sock.recv(_READ_BYTES)
        except BlockingIOError:
            return
        except OSError:  # reset by the server: the end of the stream
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self._read_done = True
            self._break()
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Response):
                self.response = event
        self._write_protocol_output()
        if self.protocol.state is CLOSED:
            self._read_done = True

    def _on_readable(self) -> None:
        """asyncio's reader callback: read now, wake the reader if one waits."""
        self._read_once()
        if self._read_done or len(self._messages) >= _PAUSE_AT:
            self._unwatch()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _watch(self) -> None:
        if self._loop is not None and not self._watching and not self._read_done:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
            self._watching = True

    def _unwatch(self) -> None:
        if self._loop is not None and self._watching:
            self._loop.remove_reader(self._sock.fileno())
            self._watching = False

    def _frame(self, frame: Frame) -> None:
        """Assemble messages from data frames (the protocol answered control frames)."""
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._messages.append((bytes(frame.data), opcode is Opcode.TEXT))
            else:
                self._fragments = [bytes(frame.data)]
                self._fragmented_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                whole, self._fragments = b"".join(self._fragments), []
                self._messages.append((whole, self._fragmented_text))

    # Opening and closing

    async def handshake(self, headers: dict[str, str] | None) -> None:
        """Send the opening request and read the answer; raises the protocol's error
        (``InvalidStatus`` for a refusal, ``InvalidMessage`` for no answer)."""
        request = self.protocol.connect()
        request.headers.setdefault("User-Agent", USER_AGENT)
        for name, value in (headers or {}).items():
            request.headers[name] = value
        self.protocol.send_request(request)
        self._write_protocol_output()
        await self._drain()
        while self.protocol.state is CONNECTING and self.protocol.handshake_exc is None:
            if self._read_done:
                break
            await self._receive()
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc
        if self.response is None:  # else open, or closed already with messages to read
            raise InvalidMessage("the server closed the connection during the handshake")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and wait for the server's answer and end of stream (at most
        :data:`CLOSE_TIMEOUT_S`); the socket is closed in any case."""
        try:
            if self.protocol.state is OPEN:
                self.protocol.send_close(code, reason)
                self._write_protocol_output()
            with anyio.move_on_after(CLOSE_TIMEOUT_S):
                await self._drain()
                while not self._read_done:
                    await self._receive(keep_messages=False)
        finally:
            if not self._read_done:  # the server did not answer: cut the connection
                self._read_done = True
                self.protocol.receive_eof()
            self.abort()

    def abort(self) -> None:
        """Close the socket now, without a closing handshake."""
        self._unwatch()
        self._sock.close()


@asynccontextmanager
async def connect_ws(
    url: str,
    *,
    local_address: tuple[str, int] | None = None,
    open_timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[WsConnection]:
    """Open a client connection: no compression, no library pings, no proxy lookup;
    closed (closing handshake) on leaving the block.

    ``local_address``: the source host (the kernel picks the port at connect).
    ``headers``: sent with the handshake (as a proxy in front adds ``X-Forwarded-For``).
    ``open_timeout``: for the TCP connection and the handshake together (TimeoutError)."""
    uri = parse_uri(url)
    if uri.secure:
        async with _library_connection(url, local_address, open_timeout, headers) as tls_ws:
            yield tls_ws
        return
    with anyio.fail_after(open_timeout):
        sock = await _connected_socket(uri, local_address[0] if local_address else None)
        loop = asyncio.get_running_loop() if sniffio.current_async_library() == "asyncio" else None
        ws = ClientConnection(sock, ClientProtocol(uri), loop)
        try:
            await ws.handshake(headers)
        except BaseException:
            ws.abort()
            raise
    try:
        yield ws
    finally:
        await ws.close()


async def _connected_socket(uri: WebSocketURI, source_host: str | None) -> socket.socket:
    """A non-blocking TCP socket connected to ``uri``'s host and port, from ``source_host``.

    Bound with IP_BIND_ADDRESS_NO_PORT, so that the kernel picks the source port at
    connect, per destination: picked at ``bind()`` it searches the ports in use on that
    address, and at 15,000 connections that search took two thirds of a bench process.
    """
    try:
        ipaddress.ip_address(uri.host)
        addresses = [(socket.AF_INET6 if ":" in uri.host else socket.AF_INET, uri.host)]
    except ValueError:
        found = await anyio.getaddrinfo(uri.host, uri.port, type=socket.SOCK_STREAM)
        addresses = [(family, str(address[0])) for family, _, _, _, address in found]
    error: OSError | None = None
    for family, host in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            code = await _connect(sock, (host, uri.port), source_host)
        except OSError as exc:  # the source host is not of this family, say: the next one
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        if not code:
            return sock
        sock.close()
        error = OSError(code, f"connect to {host}:{uri.port}: {os.strerror(code)}")
    raise error or OSError(f"no address for {uri.host}")


async def _connect(sock: socket.socket, address: tuple[str, int], source_host: str | None) -> int:
    """Connect ``sock`` (made non-blocking) to ``address``: 0, or the connection's errno."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if source_host is not None:
        if hasattr(socket, "IP_BIND_ADDRESS_NO_PORT"):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_host, 0))
    code = sock.connect_ex(address)
    if code == errno.EINPROGRESS:
        await anyio.wait_writable(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return code


@asynccontextmanager
async def _library_connection(
    url: str,
    local_address: tuple[str, int] | None,
    open_timeout: float,
    headers: dict[str, str] | None,
) -> AsyncIterator[WsConnection]:
    """websockets' own client for the runtime in use, which does TLS (``wss://``)."""
    options: dict[str, Any] = {
        "compression": None,
        "ping_interval": None,
        "proxy": None,
        "open_timeout": open_timeout,
    }
    if headers:
        options["additional_headers"] = headers
    if sniffio.current_async_library() == "trio":
        from websockets.trio.client import connect

        if local_address is not None:
            options["local_address"] = local_address[0]
        async with connect(url, **options) as trio_ws:
            yield trio_ws
    else:
        from websockets.asyncio.client import connect as aconnect

        if local_address is not None:
            options["local_addr"] = (local_address[0], 0)
        async with aconnect(url, **options) as asyncio_ws:
            yield asyncio_ws
