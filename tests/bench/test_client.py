"""One simulated buyer: what ends it, and what must not end its bench process."""

from __future__ import annotations

import base64
import hashlib

import anyio
import anyio.abc
import pytest

from api.client import BookingClient
from bench.client import Behaviour, ClientResult, run_client

pytestmark = pytest.mark.anyio

#: RFC 6455's GUID, hashed with the client's key into the handshake's answer.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
GOING_AWAY = b"\x88\x02\x03\xe9"  # an unmasked close frame, code 1001


async def _closes_after_the_join(stream: anyio.abc.ByteStream) -> None:
    """A server that accepts the WebSocket, reads the join, then goes away (1001), as a
    server process does when it shuts down under its clients."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive()
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    await stream.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    await stream.receive()  # the join
    await stream.send(GOING_AWAY)
    with anyio.move_on_after(5):
        await stream.receive()  # the client's close frame: the server ends the TCP stream
    await stream.aclose()


async def test_a_server_going_away_ends_the_client_not_its_process() -> None:
    """The server closing the socket mid-conversation (1001) ends that buyer with an
    error; it does not escape ``run_client`` (grouped by the conversation's task group)
    and take every other buyer of the bench process with it."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    result = ClientResult("buyer-1", Behaviour.PAY, 2)
    with anyio.fail_after(30):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, _closes_after_the_join)
            async with BookingClient(f"http://127.0.0.1:{port}") as rest:
                url = f"ws://127.0.0.1:{port}/v1/events/e1/waitroom"
                await run_client(url, rest, result, hold_seconds=60)
            tg.cancel_scope.cancel()
    assert result.outcome == "error"
    assert result.errors and "ConnectionClosed" in result.errors[0], result.errors
