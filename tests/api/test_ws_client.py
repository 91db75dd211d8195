"""The client's own WebSocket connection (``api.client.ws``) against the servers' WebSocket
edge over real sockets: bursts in both directions with the other side slow, the server
closing or vanishing, a refused or silent handshake, the source address and headers."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidMessage,
    InvalidStatus,
)

from api.client import BookingClient
from api.client.ws import ClientConnection, connect_ws
from bench.client import Behaviour, ClientResult, run_client
from realtime.connection import ServerConnection, text_frame
from realtime.transport import serve_websockets

pytestmark = pytest.mark.anyio

BOUND_S = 60
MAX_BYTES = 1 << 20


@asynccontextmanager
async def _serving(handler: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    """The servers' WebSocket edge running ``handler``; yields a URL to it."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_websockets(
                handler, "127.0.0.1", 0, max_message_bytes=MAX_BYTES, task_status=task_status
            )
        )
        yield f"ws://127.0.0.1:{port}/v1/events/e1/waitroom"
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _raw_server(
    handler: Callable[[anyio.abc.SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server running ``handler`` on each connection; yields its port."""

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await handler(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


def _message(i: int) -> str:
    """The ``i``-th message of a burst: sizes with 7-bit, 16-bit and 64-bit lengths."""
    size = (10, 300, 70_000)[i % 3] if i % 50 == 0 else 40 + i % 200
    return f"{i:08d}" + "x" * size


async def test_a_burst_to_a_slow_client_arrives_whole_and_in_order() -> None:
    """The server writes 20,000 frames (some over 64 KiB, one fragmented message) while
    the client reads nothing; then the client reads them all, in order, then the close."""
    count = 20_000

    async def burst(ws: ServerConnection) -> None:
        # A write per frame, as the hub writes prompts: most queue behind what the
        # kernel refused, and go out as the socket takes them.
        for i in range(count):
            ws.write(text_frame(_message(i).encode()))
        ws.write(b"\x01\x04frag" + b"\x00\x02me" + b"\x80\x04nted")  # one message
        ws.write(b"\x82\x02\x00\x01")  # a binary frame
        await ws.drain()

    async with _serving(burst) as url:
        with anyio.fail_after(BOUND_S):
            async with connect_ws(url) as ws:
                await anyio.sleep(0.5)  # the kernel's buffers fill; the server queues the rest
                for i in range(count):
                    assert await ws.recv() == _message(i)
                assert await ws.recv() == "fragmented"
                assert await ws.recv() == b"\x00\x01"
                with pytest.raises(ConnectionClosedOK):  # the handler returned: 1000
                    await ws.recv()


async def test_a_burst_to_a_slow_server_is_written_as_the_socket_takes_it() -> None:
    """The client sends 300 messages of 32 KiB (more than the kernel's buffers hold)
    while the server reads nothing for a while: each send waits for the socket to take
    its frame, and the server gets them all, in order."""
    count, received = 300, []

    async def slow_reader(ws: ServerConnection) -> None:
        await anyio.sleep(0.5)
        for _ in range(count):
            received.append(await ws.recv())
        await ws.send("done")

    async with _serving(slow_reader) as url:
        with anyio.fail_after(BOUND_S):
            async with connect_ws(url) as ws:
                for i in range(count):
                    await ws.send(f"{i:08d}" + "y" * 32_768)
                assert await ws.recv() == "done"
    assert [m[:8] for m in received] == [f"{i:08d}" for i in range(count)]


async def test_closing_is_a_clean_handshake_both_ways() -> None:
    """Leaving the block sends a close frame (1000), the server answers with its own."""
    seen: list[int | None] = []
    server_saw_it = anyio.Event()

    async def until_closed(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed:
            close = ws.protocol.close_rcvd
            seen.append(close.code if close else None)
            server_saw_it.set()

    async with _serving(until_closed) as url:
        with anyio.fail_after(BOUND_S):
            async with connect_ws(url) as ws:
                pass
            assert isinstance(ws, ClientConnection)
            await server_saw_it.wait()
    assert seen == [1000]
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
    with pytest.raises(ConnectionClosedOK):
        await ws.send("after the close")


async def test_a_server_closing_is_connection_closed_for_the_caller() -> None:
    """A server closing with 1011 (its handler failed): the messages before the close
    are read, then ``ConnectionClosedError`` with the server's code."""

    async def fail(ws: ServerConnection) -> None:
        await ws.send("last words")
        await ws.close(1011, "handler failed")

    async with _serving(fail) as url:
        with anyio.fail_after(BOUND_S):
            async with connect_ws(url) as ws:
                assert await ws.recv() == "last words"
                with pytest.raises(ConnectionClosedError) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_a_server_vanishing_is_connection_closed_not_a_socket_error() -> None:
    """A server that resets the TCP connection mid-conversation (a killed process):
    the caller sees ``ConnectionClosedError``, as with websockets' own client."""

    async def accept_then_reset(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.recv()  # the client's "now": then the connection is reset (RST)
        sock = ws._sock  # a reset, which the connection never does itself
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        await anyio.sleep(BOUND_S)

    async with _serving(accept_then_reset) as url:
        with anyio.fail_after(BOUND_S):
            async with connect_ws(url) as ws:
                assert await ws.recv() == "hello"
                await ws.send("now")
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()


async def test_a_refused_handshake_is_invalid_status_with_the_code() -> None:
    """A 403 answer to the handshake raises ``InvalidStatus`` naming HTTP 403, and ends a
    bench buyer with that error (not its process)."""

    async def refuse(stream: anyio.abc.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive()
        await stream.send(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden"
        )
        await stream.aclose()

    async with _raw_server(refuse) as port:
        url = f"ws://127.0.0.1:{port}/v1/events/e1/waitroom"
        with anyio.fail_after(BOUND_S):
            with pytest.raises(InvalidStatus, match="HTTP 403") as refused:
                async with connect_ws(url):
                    pytest.fail("the handshake was refused")
            assert refused.value.response.status_code == 403
            result = ClientResult("buyer-1", Behaviour.PAY, 1)
            async with BookingClient(f"http://127.0.0.1:{port}") as rest:
                await run_client(url, rest, result, hold_seconds=60)
    assert result.outcome == "error"
    assert result.errors == ["InvalidStatus: server rejected WebSocket connection: HTTP 403"]


async def test_a_server_hanging_up_during_the_handshake_is_invalid_message() -> None:
    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.aclose()

    async with _raw_server(hang_up) as port:
        with anyio.fail_after(BOUND_S), pytest.raises(InvalidMessage):
            async with connect_ws(f"ws://127.0.0.1:{port}/v1/events/e1/waitroom"):
                pytest.fail("no handshake was answered")


async def test_a_silent_server_times_the_handshake_out() -> None:
    async def silent(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(BOUND_S)

    async with _raw_server(silent) as port:
        with anyio.fail_after(BOUND_S), pytest.raises(TimeoutError):
            async with connect_ws(f"ws://127.0.0.1:{port}/x", open_timeout=0.5):
                pytest.fail("no handshake was answered")


async def test_a_refused_connection_is_an_os_error() -> None:
    with socket.socket() as sock:  # bound, not listening: the port refuses
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with anyio.fail_after(BOUND_S), pytest.raises(ConnectionRefusedError):
            async with connect_ws(f"ws://127.0.0.1:{port}/x"):
                pytest.fail("nothing listens there")


async def test_the_source_address_and_handshake_headers() -> None:
    """``local_address`` binds the source host (the kernel picks the port); ``headers``
    go with the handshake; the server sees both."""
    seen: list[tuple[str, str | None]] = []

    async def record(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append((ws.remote_address[0], ws.request.headers.get("X-Forwarded-For")))
        await ws.send("seen")

    async with _serving(record) as url:
        with anyio.fail_after(BOUND_S):
            async with connect_ws(
                url.replace("127.0.0.1", "localhost"),
                local_address=("127.0.0.2", 0),
                headers={"X-Forwarded-For": "203.0.113.9"},
            ) as ws:
                assert await ws.recv(decode=False) == b"seen"  # text, undecoded
    assert seen == [("127.0.0.2", "203.0.113.9")]
