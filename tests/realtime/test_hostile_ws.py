"""Hostile WebSocket clients: sockets that never join are closed, one address cannot hold
every descriptor (trusted-proxy aware), and binary frames are refused with an error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from api.client import solve_challenge
from api.client.ws import WsConnection
from api.wiring import Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import FUTURE, create_event, expect, expect_error, join, recv, send
from tests.conftest import make_settings
from tests.realtime.wsclient import raw_websocket

pytestmark = pytest.mark.anyio

#: Longest a test waits for the server to close a socket it must close, seconds.
BOUND_S = 30


@pytest.fixture
async def guarded(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """A 1 s join timeout, 2 sockets per address, loopback a trusted proxy and not exempt."""
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        ws_join_timeout_s=1.0,
        ws_connections_per_ip=2,
        trusted_proxies=("127.0.0.1/32",),
        limit_exempt=(),
    )
    async with open_services(settings) as running:
        yield running


@asynccontextmanager
async def connect(url: str, forwarded_for: str | None = None) -> AsyncIterator[WsConnection]:
    """A WebSocket, optionally with an X-Forwarded-For header (as a proxy would add)."""
    options: dict[str, Any] = {"proxy": None}
    if forwarded_for is not None:
        options["additional_headers"] = {"X-Forwarded-For": forwarded_for}
    async with raw_websocket(url, **options) as ws:
        yield ws


async def closed_by_server(ws: WsConnection) -> list[p.ServerMessage]:
    """What the server sends until it closes the socket (within BOUND_S)."""
    messages = []
    with anyio.fail_after(BOUND_S):
        try:
            while True:
                messages.append(p.server_decoder.decode(await ws.recv()))
        except ConnectionClosed:
            return messages


async def event_url(services: Services) -> str:
    async with httpx.AsyncClient(base_url=services.http_url, trust_env=False) as http:
        event = await create_event(http, opens_at=FUTURE)
    url: str = event["waitroom_url"]
    return url


async def test_a_socket_that_never_joins_is_closed(guarded: Services) -> None:
    """Silent, or sending only pings, a socket is told join_timeout and closed."""
    url = await event_url(guarded)
    async with connect(url, "203.0.113.1") as ws:
        messages = await closed_by_server(ws)
    assert [m.code for m in messages if isinstance(m, p.Error)] == ["join_timeout"]
    async with connect(url, "203.0.113.1") as ws:
        await send(ws, p.Ping())
        assert isinstance(await recv(ws), p.Pong)
        messages = await closed_by_server(ws)
    assert [m.code for m in messages if isinstance(m, p.Error)] == ["join_timeout"]


async def test_a_joined_socket_outlives_the_join_timeout(guarded: Services) -> None:
    """The timeout ends at the join: the socket is still served after it."""
    url = await event_url(guarded)
    async with connect(url, "203.0.113.2") as ws:
        await join(ws, "patient")
        await anyio.sleep(2.5)  # past the 1 s join timeout
        await send(ws, p.Ping())
        await expect(ws, p.Pong)


async def test_a_socket_handed_a_challenge_has_its_lifetime_to_solve_it(
    guarded: Services,
) -> None:
    """A join answered with a proof-of-work challenge is not a socket that never joins: it
    keeps the challenge's lifetime (minutes), not the join timeout, to come back solved
    (a slow phone at a high difficulty takes longer than the timeout)."""
    async with httpx.AsyncClient(base_url=guarded.http_url, trust_env=False) as http:
        event = await create_event(http, opens_at=FUTURE, challenge_difficulty=1_000)
    join = p.Join(quantity=1, client_id="solver")
    async with connect(event["waitroom_url"], "203.0.113.4") as ws:
        await send(ws, join)
        handed = await expect(ws, p.Challenge)
        await anyio.sleep(2.5)  # past the 1 s join timeout, solving
        await send(ws, msgspec.structs.replace(join, challenge=await solve_challenge(handed)))
        await expect(ws, p.Queued)


async def test_connections_per_address_are_capped(guarded: Services) -> None:
    """The third socket of one client address (behind the trusted proxy) is turned away;
    spoofed entries left of it do not help; other addresses and a freed slot are served."""
    url = await event_url(guarded)
    async with connect(url, "203.0.113.3") as a, connect(url, "198.51.100.9, 203.0.113.3") as b:
        await join(a, "cap-a")
        await join(b, "cap-b")
        async with connect(url, "10.9.9.9, 203.0.113.3") as c:
            messages = await closed_by_server(c)
        assert [m.code for m in messages if isinstance(m, p.Error)] == ["too_many_connections"]
        async with connect(url, "203.0.113.4") as other:
            await join(other, "cap-other")
    async with connect(url, "203.0.113.3") as again:  # a and b are closed: room again
        await join(again, "cap-again")


async def test_binary_frames_are_refused(guarded: Services) -> None:
    """A binary frame, even one holding a valid join, gets error binary_frame; the socket
    stays usable and the join as text then works."""
    url = await event_url(guarded)
    async with connect(url, "203.0.113.5") as ws:
        frame = p.encode(p.Join(quantity=1, client_id="binary"))
        await ws.send(frame)
        await expect_error(ws, "binary_frame")
        await ws.send(frame.decode())
        assert (await expect(ws, p.Queued)).ticket == 1
