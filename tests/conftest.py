"""Shared fixtures: real Redis and PostgreSQL (embedded unless REDIS_URL / DATABASE_URL are set)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers, embedded_servers, remove_data_dir
from storage.redis_store import RedisStore, open_redis_store


@pytest.fixture(scope="session")
def servers() -> Iterator[EmbeddedServers]:
    """Redis and PostgreSQL for the whole session."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-test-"))
    try:
        with embedded_servers(
            data_dir,
            redis_url=os.environ.get("REDIS_URL"),
            database_url=os.environ.get("DATABASE_URL"),
        ) as started:
            yield started
    finally:
        remove_data_dir(data_dir)


@pytest.fixture
def anyio_backend() -> str:
    """Tests run on the trio runtime."""
    return "trio"


@pytest.fixture
def event_id() -> str:
    """A fresh event id, so tests share servers without sharing state."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def redis_store(servers: EmbeddedServers) -> AsyncIterator[RedisStore]:
    """A RedisStore connected to the session's Redis."""
    assert servers.redis_url is not None
    async with open_bridge() as bridge, open_redis_store(servers.redis_url, bridge) as store:
        yield store
