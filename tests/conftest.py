"""Shared fixtures: real Redis and PostgreSQL (embedded unless REDIS_URL / DATABASE_URL are set)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio.testing

from api.client import BookingClient
from api.settings import Settings
from api.wiring import Services, open_services
from storage.bridge import open_bridge
from storage.dev_smtp import DevSmtpServer
from storage.embedded import (
    GATEWAY_URL_FILE,
    EmbeddedCluster,
    EmbeddedServers,
    RedisServer,
    embedded_cluster,
    embedded_servers,
    remove_data_dir,
    start_gateway_process,
)
from storage.redis_store import RedisStore, open_redis_store

RUNTIME = os.environ.get("BOOKING_TEST_RUNTIME", "trio")


@pytest.fixture(scope="session")
def sandbox_gateway() -> Iterator[str]:
    """The sandbox payment gateway for the whole session, a process of its own (``booking
    gateway``); its URL. The session's processes and services pay through it: it is set as
    BOOKING_STRIPE_API_BASE for every process the tests start."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-gw-"))
    argv = [sys.executable, "-m", "api.cli", "gateway", "--runtime", RUNTIME]
    proc = start_gateway_process(argv, data_dir)
    url = (data_dir / GATEWAY_URL_FILE).read_text().strip()
    saved = {k: os.environ.get(k) for k in ("BOOKING_GATEWAY", "BOOKING_STRIPE_API_BASE")}
    os.environ.update(BOOKING_GATEWAY="sandbox", BOOKING_STRIPE_API_BASE=url)
    try:
        yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        proc.terminate()
        proc.wait(timeout=10)
        remove_data_dir(data_dir)


#: ``cluster``: the session's Redis is an embedded Redis Cluster (three primaries, a
#: replica each) instead of one embedded Redis (unless REDIS_URL names one).
ON_CLUSTER = os.environ.get("BOOKING_TEST_REDIS") == "cluster"


@pytest.fixture(scope="session")
def session_cluster() -> Iterator[EmbeddedCluster | None]:
    """The session's embedded Redis Cluster (None unless BOOKING_TEST_REDIS=cluster)."""
    if not ON_CLUSTER or os.environ.get("REDIS_URL"):
        yield None
        return
    data_dir = Path(tempfile.mkdtemp(prefix="booking-cl-"))
    try:
        with embedded_cluster(data_dir) as cluster:
            yield cluster
    finally:
        remove_data_dir(data_dir)


@pytest.fixture(scope="session")
def servers(
    sandbox_gateway: str, session_cluster: EmbeddedCluster | None
) -> Iterator[EmbeddedServers]:
    """Redis (or a Redis Cluster) and PostgreSQL for the whole session (and the sandbox
    gateway)."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-test-"))
    redis_url = os.environ.get("REDIS_URL")
    if session_cluster is not None:
        redis_url = session_cluster.url
    try:
        with embedded_servers(
            data_dir, redis_url=redis_url, database_url=os.environ.get("DATABASE_URL")
        ) as started:
            yield started
    finally:
        remove_data_dir(data_dir)


@pytest.fixture(scope="session")
def redis_cluster(session_cluster: EmbeddedCluster | None) -> Iterator[EmbeddedCluster]:
    """An embedded Redis Cluster: the session's on a cluster pass, else one started for
    the tests that need one."""
    if session_cluster is not None:
        yield session_cluster
        return
    with ExitStack() as stack:
        data_dir = Path(tempfile.mkdtemp(prefix="booking-cl-"))
        stack.callback(remove_data_dir, data_dir)
        yield stack.enter_context(embedded_cluster(data_dir))


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    """The runtime under test: trio, or asyncio + uvloop when BOOKING_TEST_RUNTIME=asyncio.

    A test marked ``mock_clock(autojump_threshold=S)`` runs on trio with a ``MockClock``
    that jumps ahead once every task has waited ``S`` real seconds (0: at once).
    """
    marker = request.node.get_closest_marker("mock_clock")
    if marker is not None:
        clock = trio.testing.MockClock(autojump_threshold=marker.kwargs["autojump_threshold"])
        return "trio", {"clock": clock}
    return ("asyncio", {"use_uvloop": True}) if RUNTIME == "asyncio" else RUNTIME


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On asyncio, leave out tests marked ``once``: the trio pass runs them."""
    if RUNTIME == "trio":
        return
    once = [item for item in items if item.get_closest_marker("once")]
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not item.get_closest_marker("once")]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory of this test alone (short: unix socket paths are limited)."""
    path = Path(tempfile.mkdtemp(prefix="booking-own-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def redis_server(data_dir: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone, not started yet."""
    server = RedisServer(data_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server(data_dir: Path) -> Iterator[DevSmtpServer]:
    """A development SMTP server of this test alone (its own process, mail in a maildir)."""
    server = DevSmtpServer(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def event_id() -> str:
    """A fresh event id, so tests share servers without sharing state."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def redis_store(servers: EmbeddedServers, event_id: str) -> AsyncIterator[RedisStore]:
    """A RedisStore connected to the session's Redis; the test's event is closed afterwards."""
    assert servers.redis_url is not None
    async with open_bridge() as bridge, open_redis_store(servers.redis_url, bridge) as store:
        yield store
        if await store.snapshot(event_id) is not None:
            await store.set_event_state(event_id, "close", 0)


ADMIN_KEY = "test-admin-key-0123456789"
SECRET = "test-secret-0123456789abcdef"


def make_settings(redis_url: str | None, database_url: str | None, **overrides: Any) -> Settings:
    """Settings of a system under test: the test secret and admin key, free loopback ports
    (metrics ports included, unless given), the session's sandbox gateway."""
    overrides.setdefault("stripe_api_base", os.environ.get("BOOKING_STRIPE_API_BASE"))
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        secret=SECRET,
        admin_key=ADMIN_KEY,
        http_port=0,
        ws_port=0,
        metrics_port=overrides.pop("metrics_port", 0),
        **overrides,
    )


@pytest.fixture
async def services(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """The whole system in this process (API, WebSocket, worker) on free loopback ports."""
    settings = make_settings(servers.redis_url, servers.database_url, position_interval_s=1.0)
    async with open_services(settings) as running:
        yield running


@pytest.fixture
async def http(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the running API."""
    async with httpx.AsyncClient(base_url=services.http_url, trust_env=False, timeout=30) as client:
        yield client


def admin_client(services: Services) -> BookingClient:
    """A typed client of ``services``' REST interface holding the admin key (use it as an
    async context manager)."""
    return BookingClient(services.http_url, admin_key=ADMIN_KEY)


@pytest.fixture
async def client(services: Services) -> AsyncIterator[BookingClient]:
    """A typed client of the running API with the admin key."""
    async with admin_client(services) as c:
        yield c


def admin_headers() -> dict[str, str]:
    """Authorization of admin routes."""
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


async def ticket_status(store: RedisStore, event_id: str, seq: int) -> str | None:
    """The status of ticket ``seq`` (None when there is no such ticket)."""
    record = await store.ticket(event_id, seq)
    return None if record is None else record.status
