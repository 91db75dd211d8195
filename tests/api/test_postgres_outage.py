"""PostgreSQL going away mid-sale: payments answer 503 and change nothing; they work again when it returns."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from api.wiring import open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers, PostgresServer
from tests.api.helpers import assert_error, create_event, expect, join, new_key, pay, ws_connect
from tests.conftest import admin_headers, make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone, which it may stop and start."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-pg-"))
    server = PostgresServer(data_dir)
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_payment_while_postgres_is_down_is_503_then_succeeds(
    servers: EmbeddedServers, own_postgres: PostgresServer
) -> None:
    """503 with Retry-After and the hold payable again while PostgreSQL is down; the same key pays once it is back."""
    settings = make_settings(
        servers.redis_url,
        own_postgres.url,
    )
    async with (
        open_services(settings) as services,
        httpx.AsyncClient(base_url=services.http_url, trust_env=False, timeout=30) as http,
    ):
        event = await create_event(http)
        event_id = event["id"]
        async with ws_connect(event["waitroom_url"]) as ws:
            queued = await join(ws, "outage-1", 2, "A")
            prompt = await expect(ws, p.Prompt)
            key = new_key("outage")

            await anyio.to_thread.run_sync(own_postgres.stop)
            resp = await pay(http, prompt.hold_id, prompt.hold_token, key)
            body = assert_error(resp, 503, "unavailable")
            assert body["message"]
            assert int(resp.headers["Retry-After"]) >= 1
            ticket = await services.redis.ticket(event_id, queued.ticket)
            assert ticket is not None and ticket.status == "held"  # payable again, not stuck paying
            assert (await http.get("/readyz")).status_code == 503

            await anyio.to_thread.run_sync(own_postgres.start)
            for _ in range(50):  # the pool reconnects within a few retries
                resp = await pay(http, prompt.hold_id, prompt.hold_token, key)
                if resp.status_code != 503:
                    break
                await anyio.sleep(0.2)
            assert resp.status_code == 200, resp.text
            booking = resp.json()
            assert (await expect(ws, p.Confirmed)).booking_id == booking["id"]

        again = await pay(http, prompt.hold_id, prompt.hold_token, key)
        assert again.status_code == 200 and again.json()["id"] == booking["id"]
        audit = await http.get(f"/v1/events/{event_id}/audit?settled=1", headers=admin_headers())
        assert audit.json()["problems"] == []
        assert audit.json()["sold"] == 2
