"""The client's keep-alive HTTP transport: a connection the server closed is replaced, once;
chunked answers are read; a cancelled request never leaves its connection in the pool; a
payment answered 503 is retried as told."""

from __future__ import annotations

import contextlib

import anyio
import anyio.abc
import pytest

from api.client import ApiError, BookingClient
from api.client.transport import HttpTransport

pytestmark = [pytest.mark.anyio, pytest.mark.once]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


async def _serve(listener: anyio.abc.SocketListener, replies_per_connection: int) -> None:
    """Answer ``replies_per_connection`` requests on each connection, then close it."""

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            for _ in range(replies_per_connection):
                data = b""
                while b"\r\n\r\n" not in data:
                    data += await stream.receive()
                await stream.send(OK)

    await listener.serve(handle)


async def _client_and_server() -> tuple[HttpTransport, anyio.abc.SocketListener]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    return HttpTransport(f"http://127.0.0.1:{port}", max_connections=4), listener


async def test_closed_keep_alive_connections_are_replaced() -> None:
    """Every pooled connection closed by the server (one reply each): every request still
    succeeds, on a new connection."""
    client, listener = await _client_and_server()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(_serve, listener, 1)
        for _ in range(3):  # three idle connections the server has closed
            async with anyio.create_task_group() as burst:
                for _ in range(3):
                    burst.start_soon(client.request, "POST", "/x", b"{}")
        await anyio.sleep(0.05)
        responses = [await client.request("POST", "/x", b"{}") for _ in range(5)]
        assert [r.status for r in responses] == [200] * 5
        await client.aclose()
        tg.cancel_scope.cancel()


async def test_a_server_that_never_answers_is_a_connection_error() -> None:
    """No reply on the pooled connection nor on a new one: ConnectionError, not a crash."""
    client, listener = await _client_and_server()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(_serve, listener, 0)
        with pytest.raises(ConnectionError, match="POST /x"):
            await client.request("POST", "/x", b"{}")
        await client.aclose()
        tg.cancel_scope.cancel()


async def test_chunked_answers_are_read() -> None:
    """An answer in chunks (with a chunk extension) is read whole, and the connection serves
    the next request."""
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\n{"a\r\n4\r\n": 1\r\n1\r\n}\r\n0\r\n\r\n'
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    connections = 0

    async def handle(stream: anyio.abc.SocketStream) -> None:
        nonlocal connections
        connections += 1
        async with stream:
            for reply in (chunked, OK):
                data = b""
                while b"\r\n\r\n" not in data:
                    data += await stream.receive()
                await stream.send(reply)

    client = HttpTransport(f"http://127.0.0.1:{port}")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        first = await client.request("GET", "/x")
        second = await client.request("GET", "/y")
        assert (first.status, first.content) == (200, b'{"a": 1}')
        assert (second.status, second.content) == (200, b"{}")
        assert connections == 1
        await client.aclose()
        tg.cancel_scope.cancel()


async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool() -> None:
    """A request cancelled while its answer is awaited closes that connection: the next
    request gets its own answer on a new connection, not the late one of the first."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    answered = anyio.Event()
    late = b'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"late"'

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):  # client left
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += await stream.receive()
                    if b"/slow" in data:
                        await answered.wait()
                    await stream.send(late if b"/slow" in data else OK)

    client = HttpTransport(f"http://127.0.0.1:{port}", max_connections=1)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        with anyio.move_on_after(0.2):
            await client.request("GET", "/slow")
        answered.set()
        response = await client.request("GET", "/fast")
        assert (response.status, response.content) == (200, b"{}")
        await client.aclose()
        tg.cancel_scope.cancel()


async def test_payments_answered_503_are_retried_as_told() -> None:
    """A payment answered 503 is sent again (same key) after its Retry-After, as often as
    ``unavailable_retries`` allows; then the 503 surfaces as ApiError with its code."""

    def answer(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
        return b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n%s" % (status, extra, len(body), body)

    unavailable = answer(
        b"503 Service Unavailable",
        b'{"error":"unavailable","message":"retry shortly"}',
        b"Retry-After: 0\r\n",
    )
    paid = answer(
        b"200 OK",
        b'{"id":"bk1","event_id":"e","hold_id":"e.1","status":"confirmed","amount_cents":1,'
        b'"created_at":"t","tickets":[]}',
    )
    keys: list[bytes] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream):  # the client closed the connection
                while True:
                    data = b""
                    while b'"}' not in data:  # the whole request: its small JSON body ends it
                        data += await stream.receive()
                    keys.extend(h for h in data.split(b"\r\n") if h.startswith(b"Idempotency"))
                    await stream.send(unavailable if len(keys) % 3 else paid)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        async with BookingClient(f"http://127.0.0.1:{port}", unavailable_retries=2) as patient:
            assert (await patient.pay("e.1", "token", "tok_visa", "k1")).id == "bk1"
        assert keys == [b"Idempotency-Key: k1"] * 3
        async with BookingClient(f"http://127.0.0.1:{port}", unavailable_retries=1) as hasty:
            with pytest.raises(ApiError) as refused:
                await hasty.pay("e.1", "token", "tok_visa", "k2")
        assert (refused.value.status, refused.value.code) == (503, "unavailable")
        assert refused.value.retry_after_s == 0
        assert len(keys) == 5
        tg.cancel_scope.cancel()
