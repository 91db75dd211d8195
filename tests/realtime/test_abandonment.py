"""Heartbeats, and clients who leave: their place is kept for a grace period, then given up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from api.wiring import Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import create_event, expect, join, recv, send, ws_connect
from tests.conftest import admin_headers, make_settings

pytestmark = pytest.mark.anyio

GRACE_S = 0.5


@pytest.fixture
async def quick(servers: EmbeddedServers) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """The whole system with a short abandonment grace and a fast heartbeat."""
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        abandon_grace_s=GRACE_S,
        heartbeat_interval_s=0.2,
    )
    async with (
        open_services(settings) as services,
        httpx.AsyncClient(base_url=services.http_url, trust_env=False, timeout=30) as http,
    ):
        yield services, http


async def test_heartbeat_arrives_and_ping_is_answered(
    quick: tuple[Services, httpx.AsyncClient],
) -> None:
    """An idle waiting client gets heartbeat messages; a ping gets a pong."""
    _, http = quick
    event = await create_event(http, opens_at="2099-01-01T00:00:00Z")
    async with ws_connect(event["waitroom_url"]) as ws:
        await join(ws, "idle")
        with anyio.fail_after(2):
            while not isinstance(await recv(ws), p.Heartbeat):
                pass
        await send(ws, p.Ping())
        with anyio.fail_after(2):
            while not isinstance(await recv(ws), p.Pong):
                pass


async def test_client_away_past_grace_is_skipped_and_told_left_on_return(
    quick: tuple[Services, httpx.AsyncClient],
) -> None:
    """A client gone longer than the grace period loses its place: the client behind it is
    admitted first, the seats it would have taken go to that client, and its resume gets
    ``left``; a client back before its turn (even after the grace) keeps it."""
    services, http = quick
    event = await create_event(http)
    event_id, url = event["id"], event["waitroom_url"]
    assert (await http.post(f"/v1/events/{event_id}/pause", headers=admin_headers())).is_success
    async with ws_connect(url) as ws:
        gone = await join(ws, "gone", 2, "A")
    async with ws_connect(url) as ws:
        brief = await join(ws, "brief", 1, "A")
    async with ws_connect(url) as stay:
        await join(stay, "stay", 2, "A")
        with anyio.fail_after(10):  # the server noted both disconnects
            for seq in (gone.ticket, brief.ticket):
                while (await services.redis.ticket(event_id, seq)).gone_ms is None:  # type: ignore[union-attr]  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        await anyio.sleep(GRACE_S + 0.3)
        async with ws_connect(url) as ws:  # "brief" is back just before admission resumes
            await send(ws, p.Resume(token=brief.token))
            assert (await expect(ws, p.Queued)).ticket == brief.ticket
            resumed = await http.post(f"/v1/events/{event_id}/resume", headers=admin_headers())
            assert resumed.is_success
            brief_prompt = await expect(ws, p.Prompt)
        prompt = await expect(stay, p.Prompt)
    assert [(s.row, s.number) for s in brief_prompt.seats] == [("R1", 1)]
    assert [(s.row, s.number) for s in prompt.seats] == [("R1", 2), ("R1", 3)]

    async with ws_connect(url) as ws:
        await send(ws, p.Resume(token=gone.token))
        assert (await expect(ws, p.Queued)).ticket == gone.ticket
        await expect(ws, p.Left)
    async with ws_connect(url) as ws:  # joining again with the same id: still left
        await send(ws, p.Join(quantity=2, client_id="gone", section="A"))
        await expect(ws, p.Queued)
        await expect(ws, p.Left)
