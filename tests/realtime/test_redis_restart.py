"""A client resuming while Redis restarts is told where it stands once Redis is back."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from api.wiring import Roles, Services, open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers, RedisServer
from tests.api.helpers import create_event, expect, join, send, ws_connect
from tests.conftest import make_settings

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
    async with httpx.AsyncClient(base_url=services.http_url, trust_env=False) as http:
        event = await create_event(http)
    async with ws_connect(event["waitroom_url"]) as ws:
        queued = await join(ws, "restarting", 1, "A")
        await expect(ws, p.Prompt)
    await anyio.to_thread.run_sync(redis_server.stop)

    async def restart_later() -> None:
        await anyio.sleep(1)  # the resume below reaches the server while Redis is down
        await anyio.to_thread.run_sync(redis_server.start)

    async with ws_connect(event["waitroom_url"]) as ws, anyio.create_task_group() as tg:
        await send(ws, p.Resume(token=queued.token))
        tg.start_soon(restart_later)
        again = await expect(ws, p.Queued, wait_s=15)
        prompt = await expect(ws, p.Prompt, wait_s=15)
    assert again.ticket == queued.ticket
    assert prompt.hold_id.endswith(f".{queued.ticket}")
