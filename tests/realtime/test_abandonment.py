"""Heartbeats, and clients who leave: their place is kept for a grace period, then given up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from api.client import BookingClient, WaitingRoom
from api.wiring import Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import FUTURE, STEP_S, event_body, outcome_of, prompted, queued_in
from tests.conftest import admin_client, make_settings

pytestmark = pytest.mark.anyio

GRACE_S = 0.5


@pytest.fixture
async def quick(servers: EmbeddedServers) -> AsyncIterator[tuple[Services, BookingClient]]:
    """The whole system with a short abandonment grace and a fast heartbeat."""
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        abandon_grace_s=GRACE_S,
        heartbeat_interval_s=0.2,
    )
    async with open_services(settings) as services, admin_client(services) as client:
        yield services, client


async def test_heartbeat_arrives_and_ping_is_answered(
    quick: tuple[Services, BookingClient],
) -> None:
    """An idle waiting client gets heartbeat messages; a ping gets a pong."""
    _, client = quick
    event = await client.create_event(event_body(opens_at=FUTURE))
    async with WaitingRoom.connect(event.waitroom_url) as room:
        await queued_in(room, "idle")
        with anyio.fail_after(2):
            while not isinstance(await room.receive(), p.Heartbeat):
                pass
        await room.send(p.Ping())
        with anyio.fail_after(2):
            while not isinstance(await room.receive(), p.Pong):
                pass


async def test_client_away_past_grace_is_skipped_and_told_left_on_return(
    quick: tuple[Services, BookingClient],
) -> None:
    """A client gone longer than the grace period loses its place: the client behind it is
    admitted first, the seats it would have taken go to that client, and its resume gets
    ``left``; a client back before its turn (even after the grace) keeps it."""
    services, client = quick
    event = await client.create_event(event_body())
    event_id, url = event.id, event.waitroom_url
    assert (await client.pause(event_id)).state == "paused"
    async with WaitingRoom.connect(url) as room:
        gone = await queued_in(room, "gone", 2, "A")
    async with WaitingRoom.connect(url) as room:
        brief = await queued_in(room, "brief", 1, "A")
    async with WaitingRoom.connect(url) as stay:
        await queued_in(stay, "stay", 2, "A")
        with anyio.fail_after(10):  # the server noted both disconnects
            for seq in (gone.ticket, brief.ticket):
                while (await services.redis.ticket(event_id, seq)).gone_ms is None:  # type: ignore[union-attr]  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        await anyio.sleep(GRACE_S + 0.3)
        async with WaitingRoom.connect(
            url
        ) as room:  # "brief" is back just before admission resumes
            with anyio.fail_after(STEP_S):
                assert (await room.resume(brief.token)).ticket == brief.ticket
            assert (await client.resume(event_id)).state == "open"
            brief_prompt = await prompted(room)
        prompt = await prompted(stay)
    assert [(s.row, s.number) for s in brief_prompt.seats] == [("R1", 1)]
    assert [(s.row, s.number) for s in prompt.seats] == [("R1", 2), ("R1", 3)]

    async with WaitingRoom.connect(url) as room:
        with anyio.fail_after(STEP_S):
            assert (await room.resume(gone.token)).ticket == gone.ticket
        assert isinstance(await outcome_of(room), p.Left)
        assert room.prompt is None
    async with WaitingRoom.connect(url) as room:  # joining again with the same id: still left
        await queued_in(room, "gone", 2, "A")
        assert isinstance(await outcome_of(room), p.Left)
        assert room.prompt is None
