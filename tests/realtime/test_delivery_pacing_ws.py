"""Admission paced by delivery on the real system: with a bound of three undelivered
prompts, ten clients in line are admitted a few at a time, each wave once the server
has written the prompts before it, until everyone has a prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from api.client import BookingClient, WaitingRoom
from api.wiring import Services, open_services
from engine.metrics import ADMISSIONS_PACED
from storage.embedded import EmbeddedServers
from tests.api.helpers import event_body, prompted, queued_in
from tests.conftest import ADMIN_KEY, make_settings

pytestmark = pytest.mark.anyio

BOUND = 3
CLIENTS = 10


@pytest.fixture
async def paced(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """The whole system with admission paced at BOUND undelivered prompts."""
    settings = make_settings(servers.redis_url, servers.database_url, delivery_backlog=BOUND)
    async with open_services(settings) as running:
        yield running


async def test_admission_waits_for_the_server_to_deliver_and_everyone_is_prompted(
    paced: Services,
) -> None:
    async with BookingClient(paced.http_url, admin_key=ADMIN_KEY) as client:
        event = await client.create_event(event_body())
        await client.pause(event.id)
        async with AsyncExitStack() as stack:
            rooms = []
            for i in range(CLIENTS):
                room = await stack.enter_async_context(WaitingRoom.connect(event.waitroom_url))
                await queued_in(room, f"client-{i}", 1, "GA")
                rooms.append(room)
            paced_before = ADMISSIONS_PACED.labels(event.id)._value.get()
            await client.resume(event.id)
            for room in rooms:  # only once the server has written the prompts before
                await prompted(room)
        # Ten admitted under a bound of three: admission stopped for delivery.
        assert ADMISSIONS_PACED.labels(event.id)._value.get() > paced_before
        assert (await client.event(event.id)).queue_length == 0
