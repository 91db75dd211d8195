"""After the sale, end to end over the public interfaces: a sale that sells out, tickets read
long after the holds, buyers cancelling, the returned seats sold again to buyers in line,
every ticket at the door, and the money and the seats accounted for in the gateway, Redis and
PostgreSQL.

The system runs on the test's clock (moved forward, never waited out) and pays through the
session's sandbox gateway process; PostgreSQL is only read, to compare.
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from pypdf import PdfReader

from api.client import AlreadyCheckedIn, ApiError, BookingClient, WaitingRoom
from api.http.schemas import BookingView
from api.wiring import Services, open_services
from engine.eventlog import decode_entry
from realtime import protocol as p
from storage.embedded import EmbeddedServers
from tests.api.helpers import (
    event_body,
    gateway_ledger,
    new_key,
    outcome_of,
    pg_value,
    prompted,
    queued_in,
    told_sold_out_for_now,
)
from tests.api.test_tickets_api import ShiftedClock
from tests.conftest import admin_client, make_settings

pytestmark = pytest.mark.anyio

HOLD_S = 120
PRICE = 2_500
#: One seated section of 8 seats: four buyers of two sell it out.
SECTIONS = [{"id": "A", "price_cents": PRICE, "rows": [{"label": "R1", "seats": 8}]}]


@pytest.fixture
async def timed_services(servers: EmbeddedServers) -> AsyncIterator[tuple[Services, ShiftedClock]]:
    """The whole system on a clock the test moves, booking tokens valid for a day."""
    clock = ShiftedClock()
    settings = make_settings(
        servers.redis_url, servers.database_url, booking_token_ttl_s=86_400, position_interval_s=1.0
    )
    async with open_services(settings, clock=clock) as running:
        yield running, clock


def _seats(prompt: p.Prompt) -> set[tuple[str, int]]:
    return {(seat.row, seat.number) for seat in prompt.seats}


def _ticket_seats(booking: BookingView, codes: list[str] | None = None) -> set[tuple[str, int]]:
    return {(t.row, t.number) for t in booking.tickets if codes is None or t.code in codes}


async def _state(client: BookingClient, event_id: str) -> str:
    return (await client.event(event_id)).state


async def _counts(client: BookingClient, event_id: str) -> tuple[int, int, int]:
    """(free, held, sold) of section A."""
    section = next(s for s in (await client.event(event_id)).sections if s.id == "A")
    return section.free, section.held, section.sold


async def _audit_ok(client: BookingClient, event_id: str) -> None:
    """Every invariant of the event holds in Redis, and PostgreSQL agrees (settled)."""
    audit = await client.audit(event_id, settled=True)
    assert audit.ok, audit.problems
    assert audit.conserved and audit.postgres_matches_redis and audit.oversold == 0
    assert audit.free + audit.held + audit.sold == audit.capacity
    assert audit.sold == audit.sold_in_postgres


async def _pay(client: BookingClient, room: WaitingRoom, prompt: p.Prompt) -> BookingView:
    booking = await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key("e2e"))
    assert booking.status == "confirmed" and booking.amount_cents == prompt.amount_cents
    outcome = await outcome_of(room)
    assert isinstance(outcome, p.Confirmed) and outcome.booking_id == booking.id, outcome
    return booking


async def test_a_sale_its_cancellations_the_door_and_the_money(
    timed_services: tuple[Services, ShiftedClock], sandbox_gateway: str
) -> None:
    """Six buyers want 10 seats of 8: four are prompted and pay, the two behind them are told
    "sold out for now" and keep their places, still connected (a new join is refused). Past
    the holds' deadline every booking is read with its booking token (the hold token is
    refused), with its QR codes and PDF. Two of the four buyers cancel (one whole, one
    ticket of two): the sold-out event opens again and the returned seats go to the two who
    waited through the sell-out, in their line order, before a buyer who joins the reopened
    sale; that one waits behind their holds, is told "sold out for now" once they pay, and
    gets the seat the second cancellation returns; the buyer who joins behind it is told
    "sold out for now" once it pays, then sold_out when the sale is closed. Every live
    ticket is let in once (again: 409; a cancelled one: 410). The gateway's ledger moved by
    exactly PostgreSQL's payments minus refunds, and the seats are conserved in Redis and
    PostgreSQL."""
    services, clock = timed_services
    ledger_before = await gateway_ledger(sandbox_gateway)
    async with admin_client(services) as client, AsyncExitStack() as rooms:
        event = await client.create_event(
            event_body(sections=SECTIONS, hold_seconds=HOLD_S, max_per_order=4)
        )
        url = event.waitroom_url

        async def room() -> WaitingRoom:
            return await rooms.enter_async_context(WaitingRoom.connect(url))

        # -- the sale: demand exceeds seats ------------------------------------------------
        first = [await room() for _ in range(4)]
        for n, buyer in enumerate(first):
            await queued_in(buyer, f"first-{n}-{uuid.uuid4().hex[:6]}", 2, "A")
        prompts = [await prompted(buyer) for buyer in first]
        assert await _counts(client, event.id) == (0, 8, 0)
        late = [await room() for _ in range(2)]
        for n, buyer in enumerate(late):  # in line while the holds are open: they wait
            await queued_in(buyer, f"late-{n}-{uuid.uuid4().hex[:6]}", 1, "A")
        bookings = [
            await _pay(client, buyer, prompt) for buyer, prompt in zip(first, prompts, strict=True)
        ]
        for buyer in late:  # sold out for now: still in line, still connected
            await told_sold_out_for_now(buyer)
        assert await _state(client, event.id) == "sold_out"
        refused = await room()
        assert isinstance(await refused.join(f"refused-{uuid.uuid4().hex[:6]}", 1, "A"), p.SoldOut)
        assert await _counts(client, event.id) == (0, 0, 8)
        await _audit_ok(client, event.id)

        # -- tickets, long after the holds: the booking token reads them -------------------
        clock.advance(HOLD_S + 3_600)
        for booking, prompt in zip(bookings, prompts, strict=True):
            with pytest.raises(ApiError) as expired:
                await client.booking(booking.id, hold_token=prompt.hold_token)
            assert expired.value.status == 401
            read = await client.booking(booking.id, hold_token=booking.booking_token)
            assert read.booking_token == booking.booking_token
            assert [t.code for t in read.tickets] == [t.code for t in booking.tickets]
            assert _ticket_seats(read) == _seats(prompt)
            for ticket in read.tickets:
                svg = await client.ticket_qr(booking.id, ticket.code, token=booking.booking_token)
                assert svg.startswith("<svg")
            pdf = await client.tickets_pdf(booking.id, token=booking.booking_token)
            assert len(PdfReader(io.BytesIO(pdf)).pages) == 2

        # -- half the buyers cancel: the sale opens again ----------------------------------
        whole, partial = bookings[0], bookings[1]
        done = await client.cancel(whole.id, new_key("cx"), hold_token=whole.booking_token)
        assert (done.status, done.amount_cents, done.booking_status) == (
            "refunded",
            2 * PRICE,
            "cancelled",
        )
        assert await _state(client, event.id) == "open"

        # The returned seats go to the two who waited through the sell-out, in line order
        # (the better seat to the first), before a buyer who joins the reopened sale.
        late_prompts = [await prompted(buyer) for buyer in late]
        assert [_seats(pr) for pr in late_prompts] == [
            {min(_ticket_seats(whole))},
            {max(_ticket_seats(whole))},
        ]
        second = await room()  # wants one: nothing free, holds open: waits in line
        await queued_in(second, f"second-{uuid.uuid4().hex[:6]}", 1, "A")
        assert await _counts(client, event.id) == (0, 2, 6)
        bookings += [
            await _pay(client, buyer, prompt)
            for buyer, prompt in zip(late, late_prompts, strict=True)
        ]
        await told_sold_out_for_now(second)
        assert await _state(client, event.id) == "sold_out"

        given_back = [partial.tickets[1].code]
        done = await client.cancel(
            partial.id, new_key("cx"), tickets=given_back, hold_token=partial.booking_token
        )
        assert (done.status, done.tickets, done.amount_cents, done.booking_status) == (
            "refunded",
            given_back,
            PRICE,
            "confirmed",
        )
        second_prompt = await prompted(second)
        assert _seats(second_prompt) == _ticket_seats(partial, given_back)
        last = await room()  # behind it: sold out for now once it has paid
        await queued_in(last, f"last-{uuid.uuid4().hex[:6]}", 1, "A")
        bookings.append(await _pay(client, second, second_prompt))
        await told_sold_out_for_now(last)
        assert await _state(client, event.id) == "sold_out"
        assert await _counts(client, event.id) == (0, 0, 8)
        await client.close(event.id)  # the sale is over: nothing can come back to the line
        assert isinstance(await outcome_of(last), p.SoldOut)

        # -- the door: every live ticket once ----------------------------------------------
        staff = await client.create_staff_key(event.id, "Main door")
        live: list[str] = []
        cancelled: list[str] = []
        for booking in bookings:
            read = await client.booking(booking.id, hold_token=booking.booking_token)
            live += [t.code for t in read.tickets if t.live]
            cancelled += [t.code for t in read.tickets if not t.live]
        assert (len(live), len(cancelled)) == (8, 3)
        for code in live:
            assert (await client.checkin(staff.key, code, "Main")).code == code
        for code in live:
            with pytest.raises(AlreadyCheckedIn) as again:
                await client.checkin(staff.key, code, "Side")
            assert (again.value.status, again.value.before.gate) == (409, "Main")
        for code in cancelled:
            with pytest.raises(ApiError) as gone:
                await client.checkin(staff.key, code, "Main")
            assert (gone.value.status, gone.value.code) == (410, "ticket_cancelled")
        counts = await client.checkins(event.id)
        assert (counts.live_tickets, counts.checked_in, counts.gates) == (8, 8, {"Main": 8})

        # -- the money: the gateway moved by PostgreSQL's payments minus refunds ------------
        paid = await pg_value(
            services,
            "SELECT coalesce(sum(p.amount_cents), 0) FROM payments p "
            "JOIN bookings b ON b.id = p.booking_id WHERE b.event_id = $1",
            event.id,
        )
        refunded = await pg_value(
            services,
            "SELECT coalesce(sum(amount_cents), 0) FROM cancellations "
            "WHERE event_id = $1 AND status = 'done'",
            event.id,
        )
        assert (paid, refunded) == (11 * PRICE, 3 * PRICE)
        ledger = await gateway_ledger(sandbox_gateway)
        moved = {k: ledger[k] - ledger_before[k] for k in ledger}
        assert moved == {
            "charged_cents": paid,
            "refunded_cents": refunded,
            "balance_cents": paid - refunded,
            "charges": 7,  # one per booking
            "refunds": 2,  # one per cancellation
        }

        # -- the seats: conserved in Redis and PostgreSQL -----------------------------------
        await _audit_ok(client, event.id)
        live_in_pg, in_at_door = await pg_value(
            services,
            "SELECT (count(*) FILTER (WHERE live), count(*) FILTER (WHERE live AND "
            "checked_in_at IS NOT NULL)) FROM tickets WHERE event_id = $1",
            event.id,
        )
        assert (live_in_pg, in_at_door) == (8, 8)
        assert live_in_pg * PRICE == paid - refunded  # what is kept pays for what is live
        pending = await pg_value(
            services,
            "SELECT count(*) FROM cancellations WHERE event_id = $1 AND status <> 'done'",
            event.id,
        )
        assert pending == 0

        # Every change of the sale's afterlife is in the event's log, typed, numbered in order.
        entries = [decode_entry(e) for e in await services.pg.log.entries(event.id)]
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        kinds = Counter(type(e).__name__ for e in entries)
        assert kinds["BookingConfirmed"] == len(bookings) and kinds["TicketCheckedIn"] == 8, kinds
        assert kinds["CancellationRequested"] == kinds["BookingCancelled"] == 2, kinds
