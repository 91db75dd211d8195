"""Hostile HTTP clients, over raw sockets: every connection ends within a bounded time,
a client that leaves mid-body is no error, and malformed framing gets the JSON error body.

Bounds are generous (the server's timeouts are 1 s here; a test allows 30 s): a busy
machine makes a connection end later, never not at all.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from api.wiring import Services, open_services
from storage.embedded import EmbeddedServers
from tests.api.helpers import assert_error
from tests.conftest import ADMIN_KEY, make_settings

pytestmark = pytest.mark.anyio

#: Longest a test waits for the server to end a connection it must end, seconds.
BOUND_S = 30


@pytest.fixture
async def edge(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """The system with short body and join timeouts."""
    settings = make_settings(
        servers.redis_url, servers.database_url, body_timeout_s=1.0, ws_join_timeout_s=1.0
    )
    async with open_services(settings) as running:
        yield running


async def connect(services: Services) -> SocketStream:
    """A raw TCP connection to the HTTP API."""
    url = urlsplit(services.http_url)
    assert url.hostname is not None and url.port is not None
    return await anyio.connect_tcp(url.hostname, url.port)


async def read_until_closed(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection (within BOUND_S)."""
    received = b""
    with anyio.fail_after(BOUND_S):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                return received


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_oversized_chunked_body_ends_the_connection(edge: Services) -> None:
    """A chunked body past the limit is answered 400 and the connection is closed, though the
    client keeps sending megabytes (nobody reads them)."""
    stream = await connect(edge)
    received = b""
    async with stream, anyio.create_task_group() as tg:

        async def flood() -> None:
            chunk = b"%x\r\n%s\r\n" % (65_536, b"x" * 65_536)
            try:
                await stream.send(
                    head(
                        "POST",
                        "/v1/events",
                        f"Authorization: Bearer {ADMIN_KEY}",
                        "Transfer-Encoding: chunked",
                    )
                )
                for _ in range(64):  # 4 MiB
                    await stream.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            await anyio.sleep_forever()  # the body never ends

        tg.start_soon(flood)
        received = await read_until_closed(stream)
        tg.cancel_scope.cancel()
    assert received.startswith(b"HTTP/1.1 400"), received[:200]
    assert b'"error":"invalid_request"' in received


async def test_an_idle_keep_alive_connection_is_closed_not_left_unread(edge: Services) -> None:
    """After an answer, a keep-alive connection that stays idle past the read timeout is
    closed by the server: not kept open and unread until a longer keep-alive timer ends,
    where a client reusing it would wait for an answer that never comes."""
    stream = await connect(edge)
    async with stream:
        await stream.send(head("GET", "/healthz"))
        received = await read_until_closed(stream)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]


async def test_slow_body_times_out(edge: Services) -> None:
    """A body that stops arriving is answered 408 body_timeout and the connection closed."""
    stream = await connect(edge)
    async with stream:
        await stream.send(
            head(
                "POST",
                "/v1/events",
                f"Authorization: Bearer {ADMIN_KEY}",
                "Content-Type: application/json",
                "Content-Length: 1000",
            )
            + b'{"name": '
        )
        received = await read_until_closed(stream)
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b'"error":"body_timeout"' in received


async def test_client_leaving_mid_body_is_no_error(
    edge: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that disconnects halfway through its body is a debug line, not a 500."""
    caplog.set_level(logging.DEBUG, logger="api.http.app")
    stream = await connect(edge)
    async with stream:
        await stream.send(
            head(
                "POST",
                "/v1/events",
                f"Authorization: Bearer {ADMIN_KEY}",
                "Content-Length: 10000",
            )
            + b'{"name": "half'
        )
        await anyio.sleep(0.2)  # the handler is reading the body
    with anyio.fail_after(BOUND_S):
        while not [r for r in caplog.records if r.name == "api.http.app"]:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    records = [r for r in caplog.records if r.name == "api.http.app"]
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in records), [
        (r.levelname, r.getMessage()) for r in records
    ]


async def test_shutdown_with_a_connection_mid_body_ends(servers: EmbeddedServers) -> None:
    """Stopping the server while a client is halfway through its body (and stays there)
    ends within the bound: the connection does not hold the shutdown open."""
    settings = make_settings(servers.redis_url, servers.database_url, body_timeout_s=30.0)
    stop, stopped = anyio.Event(), anyio.Event()

    async def serve(*, task_status: anyio.abc.TaskStatus[Services]) -> None:
        async with open_services(settings) as running:
            task_status.started(running)
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as tg:
        running = await tg.start(serve)
        async with await connect(running) as stream:  # the client stays until the end
            await stream.send(
                head(
                    "POST",
                    "/v1/events",
                    f"Authorization: Bearer {ADMIN_KEY}",
                    "Content-Length: 10000",
                )
                + b'{"name": "half'
            )
            await anyio.sleep(0.2)  # the handler is reading the body
            stop.set()
            with anyio.fail_after(BOUND_S):
                await stopped.wait()


@pytest.mark.parametrize("length", ["abc", "-1", "10, 11", "1e3"])
async def test_malformed_content_length_gets_a_json_error(edge: Services, length: str) -> None:
    """A Content-Length that is not a number is a 400 with the usual JSON error body."""
    stream = await connect(edge)
    async with stream:
        await stream.send(head("POST", "/v1/events", f"Content-Length: {length}") + b"{}")
        received = await read_until_closed(stream)
    header, _, body = received.partition(b"\r\n\r\n")
    assert header.startswith(b"HTTP/1.1 400"), received[:200]
    assert b"application/json" in header.lower(), header
    assert body.startswith(b'{"error":"invalid_request","message":'), body


async def test_unknown_booking_without_credentials_is_401(edge: Services) -> None:
    """Credentials are checked before the booking is looked up: no existence oracle."""
    async with httpx.AsyncClient(base_url=edge.http_url, trust_env=False) as http:
        resp = await http.get("/v1/bookings/b-does-not-exist")
        assert_error(resp, 401, "unauthorized")
        resp = await http.get(
            "/v1/bookings/b-does-not-exist", headers={"Authorization": "Bearer forged"}
        )
        assert_error(resp, 401, "unauthorized")
