"""The waiting room's WebSocket connection against real clients over real sockets: what
websockets' own server connection did (fragments, pings, size limit, invalid text, a
request that is not a WebSocket handshake, the closing handshake) it still does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import sniffio
from websockets.exceptions import ConnectionClosed

from realtime.connection import ServerConnection, text_frame
from realtime.transport import serve_websockets
from tests.realtime.wsclient import raw_websocket

pytestmark = pytest.mark.anyio

MAX_BYTES = 4096
BOUND_S = 30


async def _echo(ws: ServerConnection) -> None:
    """Sends back every text message, and the type of every binary one."""
    while True:
        message = await ws.recv()
        await ws.send(message if isinstance(message, str) else "binary")


@asynccontextmanager
async def _serving(
    handler: Callable[[ServerConnection], Awaitable[None]] = _echo,
) -> AsyncIterator[int]:
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_websockets(
                handler, "127.0.0.1", 0, max_message_bytes=MAX_BYTES, task_status=task_status
            )
        )
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _client(port: int) -> AsyncIterator[Any]:
    async with raw_websocket(f"ws://127.0.0.1:{port}/v1/events/e/waitroom", max_size=None) as ws:
        yield ws


async def _closed_with(ws: Any) -> int | None:
    """The close code the server sent, once the connection closed."""
    with anyio.fail_after(BOUND_S):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


async def test_messages_fragments_and_pings() -> None:
    async with _serving() as port, _client(port) as ws:
        with anyio.fail_after(BOUND_S):
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(["frag", "mented"])  # one message in three frames
            assert await ws.recv() == "fragmented"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == "binary"
            pong = await ws.ping()
            await (pong.wait() if sniffio.current_async_library() == "trio" else pong)
            await ws.send("é" * 1000)  # a frame of 2,000 bytes: a 16-bit length
            assert await ws.recv() == "é" * 1000


async def test_a_message_over_the_limit_is_closed_with_1009() -> None:
    async with _serving() as port, _client(port) as ws:
        await ws.send("x" * (MAX_BYTES + 1))
        assert await _closed_with(ws) == 1009


async def test_invalid_utf8_in_a_text_frame_is_closed_with_1007() -> None:
    async with _serving() as port, _client(port) as ws:
        async with ws.send_context():  # the client library would refuse to send it
            ws.protocol.send_text(b"\xff\xfe")
        assert await _closed_with(ws) == 1007


async def test_the_handler_returning_closes_with_1000() -> None:
    async def greet(ws: ServerConnection) -> None:
        await ws.send("bye")

    async with _serving(greet) as port, _client(port) as ws:
        with anyio.fail_after(BOUND_S):
            assert await ws.recv() == "bye"
        assert await _closed_with(ws) == 1000


def _plain_get(port: int) -> bytes:
    """A plain HTTP GET (no upgrade), answered and closed by the server."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND_S) as sock:
        sock.sendall(b"GET /v1/events/e/waitroom HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    return received


async def test_a_request_that_is_not_a_websocket_handshake_gets_an_http_error() -> None:
    async with _serving() as port:
        answer = await anyio.to_thread.run_sync(_plain_get, port)
    assert answer.startswith(b"HTTP/1.1 426 ") or answer.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nServer:" not in answer


_HANDSHAKE = (
    b"GET /v1/events/e/waitroom HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
#: A client's close frame (1000), masked with a zero key.
_CLOSE_1000 = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


def _close_without_reading(port: int, done: threading.Event) -> None:
    """Opens a WebSocket, sends a close frame and the end of its stream, and then reads
    nothing more (its socket stays open, so the server's writes wait) until ``done``."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND_S) as sock:
        sock.sendall(_HANDSHAKE)
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101 ")
        sock.sendall(_CLOSE_1000)
        sock.shutdown(socket.SHUT_WR)
        done.wait(BOUND_S)


async def test_a_connection_that_ends_while_its_frames_wait_leaves_no_writer_behind() -> None:
    """The frames a client never read are dropped when its connection ends: the task
    waiting to write them ends with it (it runs in the listener's group, not the
    connection's, so it must be woken when the socket is closed)."""
    served: list[ServerConnection] = []
    frame = text_frame(b"x" * 60_000)

    async def flood(ws: ServerConnection) -> None:
        served.append(ws)
        while not ws.backed_up:  # until the kernel takes no more: a writer task waits
            ws.write(frame)
        await ws.recv()  # the client's close

    done = threading.Event()
    async with _serving(flood) as port, anyio.create_task_group() as tg:
        tg.start_soon(lambda: anyio.to_thread.run_sync(_close_without_reading, port, done))
        try:
            with anyio.fail_after(BOUND_S):
                while not served or served[0].backed_up:  # noqa: ASYNC110 (a state, no event)
                    await anyio.sleep(0.05)
        finally:
            done.set()


def _handshake_in_two_parts(port: int, first_sent: threading.Event) -> bytes:
    """The opening handshake's request sent in two parts, a moment apart; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND_S) as sock:
        sock.sendall(_HANDSHAKE[:40])
        first_sent.set()
        time.sleep(0.3)
        sock.sendall(_HANDSHAKE[40:])
        response = b""
        while b"\r\n\r\n" not in response and (byte := sock.recv(1)):
            response += byte
        return response


async def test_a_request_that_arrives_in_parts_is_answered() -> None:
    """A request only part of which is there when the connection is accepted: the rest
    is waited for."""
    first_sent = threading.Event()
    answers: list[bytes] = []
    async with _serving() as port:
        client = threading.Thread(
            target=lambda: answers.append(_handshake_in_two_parts(port, first_sent))
        )
        client.start()
        # Hold the loop (the server's too) until the first part is in the server's
        # socket: the connection is accepted with part of its request there.
        first_sent.wait(BOUND_S)
        time.sleep(0.1)  # noqa: ASYNC251 (the loop is held on purpose)
        await anyio.to_thread.run_sync(client.join, BOUND_S)
    assert answers and answers[0].startswith(b"HTTP/1.1 101 ")
