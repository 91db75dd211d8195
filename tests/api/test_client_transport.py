"""The bench's keep-alive REST client: a connection the server closed is replaced, once."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from bench.http import LeanRestClient

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


async def _client_and_server() -> tuple[LeanRestClient, anyio.abc.SocketListener]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    return LeanRestClient(f"http://127.0.0.1:{port}", max_connections=4), listener


async def test_closed_keep_alive_connections_are_replaced() -> None:
    """Every pooled connection closed by the server (one reply each): every request still
    succeeds, on a new connection."""
    client, listener = await _client_and_server()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(_serve, listener, 1)
        for _ in range(3):  # three idle connections the server has closed
            async with anyio.create_task_group() as burst:
                for _ in range(3):
                    burst.start_soon(client.post, "/x", b"{}", {})
        await anyio.sleep(0.05)
        responses = [await client.post("/x", b"{}", {}) for _ in range(5)]
        assert [r.status_code for r in responses] == [200] * 5
        await client.aclose()
        tg.cancel_scope.cancel()


async def test_a_server_that_never_answers_is_a_connection_error() -> None:
    """No reply on the pooled connection nor on a new one: ConnectionError, not a crash."""
    client, listener = await _client_and_server()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(_serve, listener, 0)
        with pytest.raises(ConnectionError, match="POST /x"):
            await client.post("/x", b"{}", {})
        await client.aclose()
        tg.cancel_scope.cancel()
