"""A process started before its Redis waits for it (startup_wait_s), then serves."""

from __future__ import annotations

import anyio
import httpx
import pytest

from api.wiring import Roles, open_services
from storage.embedded import EmbeddedServers, RedisServer
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


async def test_services_wait_for_a_redis_started_after_them(
    servers: EmbeddedServers, redis_server: RedisServer
) -> None:
    """Services opened a second before Redis starts come up and answer /readyz with 200."""
    settings = make_settings(redis_server.url, servers.database_url, startup_wait_s=30)

    async def start_later() -> None:
        await anyio.sleep(1)
        await anyio.to_thread.run_sync(redis_server.start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(start_later)
        async with (
            open_services(settings, Roles(api=True, worker=False)) as services,
            httpx.AsyncClient(base_url=services.http_url, trust_env=False) as http,
        ):
            assert (await http.get("/readyz")).status_code == 200
