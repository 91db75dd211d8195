"""Opening a store before its server answers: tried again until it does, or for wait_s."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from storage.bridge import open_bridge
from storage.embedded import PostgresServer, RedisServer
from storage.errors import StorageUnavailable
from storage.pg_store import open_pg_store
from storage.redis_store import open_redis_store
from tests.storage.helpers import new_event

pytestmark = pytest.mark.anyio

#: Put in the URLs: it must never reach the logs.
PASSWORD = "pw-never-logged-0123456789"


@pytest.fixture
def stopped_postgres(data_dir: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone, created and then stopped."""
    server = PostgresServer(data_dir)
    server.stop()
    try:
        yield server
    finally:
        server.cleanup()


def retry_warnings(caplog: pytest.LogCaptureFixture, store: str) -> list[str]:
    """The warnings of attempts that failed and were tried again."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "storage.startup"
        and r.levelno == logging.WARNING
        and r.getMessage().startswith(f"{store} not reachable yet")
    ]


async def start_later(start: Callable[[], object]) -> None:
    """Start a server (a blocking call) in a thread after a second."""
    await anyio.sleep(1)
    await anyio.to_thread.run_sync(start)


async def test_redis_store_opens_once_redis_starts(
    redis_server: RedisServer, event_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Opened while Redis is down, the store waits for it, loads the scripts and runs them."""
    caplog.set_level(logging.WARNING, logger="storage.startup")
    async with open_bridge() as bridge, anyio.create_task_group() as tg:
        tg.start_soon(start_later, redis_server.start)
        async with open_redis_store(redis_server.url, bridge, wait_s=30) as store:
            await new_event(store, event_id)  # runs init_event by its loaded SHA
            assert await store.event_ids() == [event_id]
    assert len(retry_warnings(caplog, "Redis")) >= 2


@pytest.mark.parametrize("store", ["Redis", "PostgreSQL"])
async def test_store_gives_up_after_wait_s(
    store: str, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With no server, StorageUnavailable after about wait_s and several attempts, no URL logged."""
    caplog.set_level(logging.WARNING, logger="storage.startup")
    if store == "Redis":
        url = f"unix://:{PASSWORD}@{data_dir / 'redis.sock'}"
        opening = open_redis_store
    else:  # no server listens in the socket directory
        url = f"postgresql://booking:{PASSWORD}@/booking?host={data_dir}"
        opening = open_pg_store
    async with open_bridge() as bridge:
        started = anyio.current_time()
        with pytest.raises(StorageUnavailable):
            async with opening(url, bridge, wait_s=1.5):
                pass
        elapsed = anyio.current_time() - started
    assert 1.5 <= elapsed < 5
    assert len(retry_warnings(caplog, store)) >= 2
    assert PASSWORD not in caplog.text and url not in caplog.text


async def test_without_wait_a_missing_redis_fails_at_once(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """wait_s defaults to 0: one attempt, StorageUnavailable, nothing tried again."""
    caplog.set_level(logging.WARNING, logger="storage.startup")
    async with open_bridge() as bridge:
        started = anyio.current_time()
        with pytest.raises(StorageUnavailable):
            async with open_redis_store(f"unix://{data_dir / 'redis.sock'}", bridge):
                pass
        assert anyio.current_time() - started < 1
    assert retry_warnings(caplog, "Redis") == []


async def test_pg_store_opens_once_postgres_starts(
    stopped_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Opened while PostgreSQL is down, the store waits for it to start and then answers."""
    caplog.set_level(logging.WARNING, logger="storage.startup")
    # The embedded server trusts local connections: the password is only there to be hidden.
    url = stopped_postgres.url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in url
    async with open_bridge() as bridge, anyio.create_task_group() as tg:
        tg.start_soon(start_later, stopped_postgres.start)
        async with open_pg_store(url, bridge, wait_s=30) as pg:
            await pg.ping()
    assert len(retry_warnings(caplog, "PostgreSQL")) >= 2
    assert PASSWORD not in caplog.text
