"""Bookings: what a paid hold became, as the record in PostgreSQL keeps it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec

from engine.errors import NotFound
from engine.ids import is_valid_id
from storage.pg_records import BookingRow, TicketRow
from storage.pg_store import PgStore

__all__ = ["Booking", "BookingStatus", "Bookings", "Ticket"]


class BookingStatus(StrEnum):
    """Where a booking stands."""

    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"  # every ticket cancelled (see engine/cancellation.py)


class Ticket(msgspec.Struct, frozen=True):
    """One seat of a booking, with the code the door scans."""

    code: str
    section: str
    row: str
    number: int
    #: False once the ticket was cancelled.
    live: bool = True


class Booking(msgspec.Struct, frozen=True):
    """A booking and its tickets."""

    id: str
    event_id: str
    hold_id: str
    status: BookingStatus
    amount_cents: int
    created_at: datetime
    tickets: list[Ticket]
    #: Until when the booking token reads it, s since the epoch (fixed at confirmation).
    token_expires_s: int


def ticket_from_row(row: TicketRow) -> Ticket:
    """The ticket of a stored ticket row."""
    return Ticket(row.code, row.section, row.seat_row, row.seat_number, row.live)


def booking_from_row(row: BookingRow) -> Booking:
    """The booking of a stored booking row."""
    return Booking(
        id=row.id,
        event_id=row.event_id,
        hold_id=row.hold_id,
        status=BookingStatus(row.status),
        amount_cents=row.amount_cents,
        created_at=row.created_at,
        tickets=[ticket_from_row(t) for t in row.tickets],
        token_expires_s=row.token_expires_s,
    )


class Bookings:
    """Looks bookings up (cancellation and check-in belong here too)."""

    def __init__(self, pg: PgStore) -> None:
        self._pg = pg  # the record

    async def get(self, booking_id: str) -> Booking:
        """A booking by id; NotFound if there is none."""
        if not is_valid_id(booking_id):
            raise NotFound(f"no booking {booking_id!r}")
        row = await self._pg.booking(booking_id)
        if row is None:
            raise NotFound(f"no booking {booking_id!r}")
        return booking_from_row(row)
