"""PostgreSQL going away mid-sale: payments answer 503 and change nothing; they work again when
it returns, and the client's retries of a 503 carry a payment through."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from api.client import ApiError, BookingClient, WaitingRoom
from api.http.schemas import BookingView
from api.wiring import open_services
from realtime import protocol as p
from storage.embedded import EmbeddedServers, PostgresServer
from tests.api.helpers import event_body, new_key
from tests.conftest import ADMIN_KEY, make_settings

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
    """503 with Retry-After and the hold payable again while PostgreSQL is down; a client that
    retries 503s with the same key pays once it is back, once."""
    settings = make_settings(servers.redis_url, own_postgres.url)
    async with (
        open_services(settings) as services,
        BookingClient(services.http_url, admin_key=ADMIN_KEY) as client,
        BookingClient(services.http_url, unavailable_retries=60) as patient,
    ):
        event = await client.create_event(event_body())
        async with WaitingRoom.connect(event.waitroom_url) as room:
            queued = await room.join("outage-1", 2, "A")
            assert isinstance(queued, p.Queued)
            async for _ in room.until_prompt():
                pass
            prompt = room.prompt
            assert prompt is not None
            key = new_key("outage")

            await anyio.to_thread.run_sync(own_postgres.stop)
            with pytest.raises(ApiError) as down:
                await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
            assert (down.value.status, down.value.code) == (503, "unavailable")
            assert down.value.message and (down.value.retry_after_s or 0) >= 1
            ticket = await services.redis.ticket(event.id, queued.ticket)
            assert ticket is not None and ticket.status == "held"  # payable again, not stuck paying
            assert not await client.ready()

            paid: list[BookingView] = []

            async def pay_patiently() -> None:  # answered 503 until PostgreSQL is back
                paid.append(await patient.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key))

            async with anyio.create_task_group() as tg:
                tg.start_soon(pay_patiently)
                await anyio.to_thread.run_sync(own_postgres.start)
            [booking] = paid
            assert await room.outcome() == p.Confirmed(booking_id=booking.id)

        again = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", key)
        assert again.id == booking.id
        audit = await client.audit(event.id, settled=True)
        assert audit.problems == []
        assert audit.sold == 2
