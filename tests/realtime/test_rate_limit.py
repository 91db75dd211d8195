"""Joins are rate-limited per client id and per IP, answered with an error rate_limited."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.client import WaitingRoom
from api.wiring import Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import FUTURE, event_body, queued_in, refused
from tests.conftest import admin_client, make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def limited(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """The system with tight join limits: 2 per client id, 4 per IP, no refill within a test."""
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        join_client_rate_per_s=0.001,
        join_client_burst=2,
        join_ip_rate_per_s=0.001,
        join_ip_burst=4,
    )
    async with open_services(settings) as running:
        yield running


async def test_client_id_joining_too_often_is_refused(limited: Services) -> None:
    """The third join of one client id gets error rate_limited; the line is unchanged by it."""
    async with admin_client(limited) as client:
        event = await client.create_event(event_body(opens_at=FUTURE))
        for _ in range(2):
            async with WaitingRoom.connect(event.waitroom_url) as room:
                assert (await queued_in(room, "eager")).ticket == 1
        async with WaitingRoom.connect(event.waitroom_url) as room:
            error = await refused(room, p.Join(quantity=1, client_id="eager"), "rate_limited")
            assert "retry in 1000 s" in error.message, error  # one token of the 0.001/s bucket
            # The socket stays usable for a resume or another message.
            await refused(room, p.Join(quantity=1, client_id="eager"), "rate_limited")
        assert (await client.event(event.id)).queue_length == 1


async def test_one_ip_with_many_client_ids_is_refused(limited: Services) -> None:
    """Distinct client ids from one address share its bucket: the fifth join is refused."""
    async with admin_client(limited) as client:
        event = await client.create_event(event_body(opens_at=FUTURE))
        async with WaitingRoom.connect(event.waitroom_url) as room:
            for i in range(4):
                async with WaitingRoom.connect(event.waitroom_url) as other:
                    await queued_in(other, f"sybil-{i}")
            await refused(room, p.Join(quantity=1, client_id="sybil-4"), "rate_limited")
        assert (await client.event(event.id)).queue_length == 4
