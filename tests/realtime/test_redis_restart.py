"""A client resuming while Redis restarts is told where it stands once Redis is back."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from api.client import WaitingRoom
from api.wiring import Roles, Services, open_services
from storage.embedded import EmbeddedServers, RedisServer
from tests.api.helpers import event_body, prompted, queued_in
from tests.conftest import admin_client, make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def own_redis_services(
    servers: EmbeddedServers,
) -> AsyncIterator[tuple[Services, RedisServer]]:
    """The system on a Redis of this test alone (which it restarts), the shared PostgreSQL."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-redis-"))
    redis_server = RedisServer(data_dir)
    try:
        settings = make_settings(
            redis_server.start(),
            servers.database_url,
        )
        async with open_services(settings, Roles(api=True, worker=True)) as running:
            yield running, redis_server
    finally:
        redis_server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_resume_during_redis_restart_gets_its_prompt(
    own_redis_services: tuple[Services, RedisServer],
) -> None:
    """Queued, then the prompt it missed, even though Redis was down when it resumed."""
    services, redis_server = own_redis_services
    async with admin_client(services) as client:
        event = await client.create_event(event_body())
    async with WaitingRoom.connect(event.waitroom_url) as room:
        queued = await queued_in(room, "restarting", 1, "A")
        await prompted(room)
    await anyio.to_thread.run_sync(redis_server.stop)

    async def restart_later() -> None:
        await anyio.sleep(1)  # the resume below reaches the server while Redis is down
        await anyio.to_thread.run_sync(redis_server.start)

    async with WaitingRoom.connect(event.waitroom_url) as room, anyio.create_task_group() as tg:
        tg.start_soon(restart_later)
        with anyio.fail_after(15):
            again = await room.resume(queued.token)
        prompt = await prompted(room)
    assert again.ticket == queued.ticket
    assert prompt.hold_id.endswith(f".{queued.ticket}")
