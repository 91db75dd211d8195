"""Rows the PostgreSQL store takes and returns."""

from __future__ import annotations

from datetime import datetime

import msgspec

from storage.log_events import Actor

__all__ = [
    "BookingConflict",
    "BookingRow",
    "CancellationRow",
    "CheckinCountsRow",
    "CheckinRow",
    "CommitResult",
    "EventCancellationRow",
    "EventRow",
    "LiveBooking",
    "MailJob",
    "NewBooking",
    "NewCancellation",
    "ReturnedSeatRow",
    "SeatRow",
    "StaffKeyRow",
    "TicketRow",
]


class EventRow(msgspec.Struct, frozen=True):
    """An event as stored; ``sections`` is its section list as JSON text."""

    id: str
    name: str
    opens_at: datetime
    max_per_order: int
    hold_seconds: int
    max_active_holds: int
    sections: str
    currency: str = "EUR"
    #: How buyers prove who they are, as JSON text ("" when anybody may join).
    identity: str = ""
    #: Seats one verified person may hold or buy over all its orders (0: no limit).
    max_per_person: int = 0
    #: The join challenge's difficulty at creation (0: none).
    challenge_difficulty: int = 0
    #: Whether a buyer may cancel with a full refund, and until when (None: no deadline).
    buyer_refunds: bool = True
    refund_until: datetime | None = None


class SeatRow(msgspec.Struct, frozen=True, array_like=True):
    """One seat of an event."""

    section: str
    position: int
    seat_row: str
    seat_number: int
    price_cents: int


class TicketRow(msgspec.Struct, frozen=True):
    """One seat of a booking, with the code the door scans."""

    code: str
    section: str
    position: int
    seat_row: str
    seat_number: int
    live: bool = True


class NewBooking(msgspec.Struct, frozen=True):
    """A paid hold to be recorded: booking, tickets, payment and log entry together."""

    booking_id: str
    event_id: str
    hold_id: str
    ticket_seq: int
    client_id: str
    amount_cents: int
    idempotency_key: str
    gateway_ref: str
    tickets: list[TicketRow]
    #: Until when the booking token reads the booking, s since the epoch.
    token_expires_s: int
    #: Where the confirmation mail goes (None: no mail).
    email: str | None = None


class CommitResult(msgspec.Struct, frozen=True):
    """What became of one NewBooking: ``booking_id`` is the existing one on a replayed key.

    ``error`` is set (and nothing written) when the booking broke a constraint,
    e.g. a seat that already has a live ticket.
    """

    booking_id: str | None
    replayed: bool = False
    error: str | None = None
    #: When the booking was recorded (PostgreSQL's clock; None when nothing was written).
    created_at: datetime | None = None


class BookingRow(msgspec.Struct, frozen=True):
    """A booking and its tickets."""

    id: str
    event_id: str
    hold_id: str
    ticket_seq: int
    amount_cents: int
    status: str
    created_at: datetime
    tickets: list[TicketRow]
    token_expires_s: int


class LiveBooking(msgspec.Struct, frozen=True):
    """A confirmed booking with its live seats, as reconciliation reads it."""

    booking_id: str
    event_id: str
    hold_id: str
    ticket_seq: int
    client_id: str
    amount_cents: int
    idempotency_key: str
    section: str
    positions: list[int]


class BookingConflict(msgspec.Struct, frozen=True):
    """A booking whose seats Redis gave to another ticket: its charge needs a refund."""

    event_id: str
    booking_id: str
    hold_id: str
    reason: str


class NewCancellation(msgspec.Struct, frozen=True):
    """A cancellation asked for: the whole booking (``codes`` None) or some of its tickets."""

    id: str
    booking_id: str
    idempotency_key: str
    codes: list[str] | None
    by_admin: bool
    #: Who asked, when the admin did (logged with the request).
    actor: Actor | None = None


class CancellationRow(msgspec.Struct, frozen=True):
    """A cancellation as recorded: ``status`` pending, done or refused."""

    id: str
    booking_id: str
    event_id: str
    idempotency_key: str
    whole: bool
    codes: list[str]
    amount_cents: int
    charge_ref: str
    by_admin: bool
    status: str
    refund_ref: str | None
    booking_status: str | None
    attempts: int
    created_at: datetime
    done_at: datetime | None


class ReturnedSeatRow(msgspec.Struct, frozen=True):
    """Seats of a done cancellation, one section of one booking, as Redis must free them."""

    event_id: str
    booking_id: str
    ticket_seq: int
    section: str
    positions: list[int]


class EventCancellationRow(msgspec.Struct, frozen=True):
    """A whole event's cancellation and how far it got: bookings refunded, pending (the
    refund being retried), and still live (not yet cancelled)."""

    event_id: str
    status: str
    requested_at: datetime
    done_at: datetime | None
    refunded: int
    pending: int
    refused: int
    live: int
    refunded_cents: int


class SagaClaim(msgspec.Struct, frozen=True):
    """A payment about to charge a card: its saga starts (or starts again after a decline)."""

    idempotency_key: str
    event_id: str
    hold_id: str
    amount_cents: int
    currency: str


class SagaRow(msgspec.Struct, frozen=True):
    """A payment's saga as stored."""

    idempotency_key: str
    event_id: str
    hold_id: str
    amount_cents: int
    currency: str
    step: str
    gateway_ref: str | None
    booking_id: str | None
    updated_at: datetime


class StaffKeyRow(msgspec.Struct, frozen=True):
    """A staff key of an event as stored (its hash stays in the database)."""

    id: str
    event_id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


class CheckinRow(msgspec.Struct, frozen=True):
    """A scanned ticket after the scan: ``admitted`` when this scan let it in.

    ``checked_in_at`` and ``gate`` are those of the first scan (this one when admitted).
    """

    code: str
    event_id: str
    section: str
    seat_row: str
    seat_number: int
    live: bool
    admitted: bool
    checked_in_at: datetime | None
    gate: str | None
    #: Not let in because a pending cancellation names it (its refund is under way).
    cancelling: bool = False


class CheckinCountsRow(msgspec.Struct, frozen=True):
    """An event's tickets at the door: live ones, those in, and those in by gate."""

    live: int
    checked_in: int
    gates: dict[str, int]


class MailJob(msgspec.Struct, frozen=True):
    """A confirmation mail due: its booking, where it goes, and how many tries came before."""

    booking_id: str
    recipient: str
    attempts: int
