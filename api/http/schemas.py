"""REST bodies: what clients send (decoded strictly) and what they get back.

These are the interface's wire types, as ``realtime/protocol.py`` is for the waiting
room: they import nothing of the project, so the Python client (``api.client``)
decodes into them without loading the engine. The routes build them from the
engine's records; ``tests/api/test_openapi.py`` checks that each view keeps the
fields of the record it shows. An event's spec (the body of ``POST /v1/events``)
is the engine's ``EventSpec``, which validates it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "AdmissionBody",
    "AdmissionView",
    "AuditView",
    "BookingView",
    "CancelBody",
    "CancellationView",
    "CreatedEvent",
    "ErrorBody",
    "EventCancellationView",
    "EventList",
    "EventSummary",
    "EventView",
    "PaymentBody",
    "ReleasedView",
    "SectionAvailability",
    "StateView",
    "TicketView",
]


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error answer."""

    error: str
    message: str


class CreatedEvent(msgspec.Struct, frozen=True):
    """Answer to creating an event."""

    id: str
    waitroom_url: str


class SectionAvailability(msgspec.Struct, frozen=True):
    """One section's price and seats by state."""

    id: str
    price_cents: int
    capacity: int
    free: int
    held: int
    sold: int


class EventView(msgspec.Struct, frozen=True):
    """Public state of an event."""

    id: str
    name: str
    state: str
    opens_at: str
    max_per_order: int
    hold_seconds: int
    max_active_holds: int
    queue_length: int
    active_holds: int
    sections: list[SectionAvailability]
    waitroom_url: str
    admissions_per_minute: int = 0  # 0: no rate cap
    admitted: int = 0  # clients admitted so far (seats held for them)
    currency: str = "EUR"  # ISO 4217 code of every price of the event
    #: Refund policy: whether buyers may cancel with a full refund, until when (None: no
    #: deadline); an admin may always cancel and refund.
    buyer_refunds: bool = True
    refund_until: str | None = None


class EventSummary(msgspec.Struct, frozen=True):
    """One event in the list of events: its state, prices and seats, all sections together."""

    id: str
    name: str
    state: str
    opens_at: str
    currency: str
    min_price_cents: int
    max_price_cents: int
    capacity: int
    free: int
    held: int
    sold: int
    queue_length: int


class EventList(msgspec.Struct, frozen=True):
    """The most recently created events, newest first."""

    events: list[EventSummary]


class AdmissionBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Change admission caps live; a field left out keeps its value (rate 0: no rate cap)."""

    max_active_holds: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    admissions_per_minute: Annotated[int, msgspec.Meta(ge=0, le=6_000_000)] | None = None


class AdmissionView(msgspec.Struct, frozen=True):
    """The admission caps in force."""

    id: str
    max_active_holds: int
    admissions_per_minute: int


class PaymentBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Pay for a hold with a card token (sandbox: tok_visa, tok_declined, tok_timeout)."""

    card_token: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class TicketView(msgspec.Struct, frozen=True):
    """One seat of a booking, with the code the door scans."""

    code: str
    section: str
    row: str
    number: int
    live: bool = True  # false once the ticket was cancelled


class BookingView(msgspec.Struct, frozen=True):
    """A booking and its tickets."""

    id: str
    event_id: str
    hold_id: str
    status: str
    amount_cents: int
    created_at: str
    tickets: list[TicketView]


class ReleasedView(msgspec.Struct, frozen=True):
    """A hold given back by its holder."""

    hold_id: str
    status: str


class StateView(msgspec.Struct, frozen=True):
    """An event's admission state after pause or resume."""

    id: str
    state: str


class AuditView(msgspec.Struct, frozen=True, kw_only=True):
    """The invariants of an event checked now; ``ok`` when every one holds."""

    capacity: int
    free: int
    held: int
    sold: int
    sold_in_postgres: int
    oversold: int
    counters_match_maps: bool
    conserved: bool
    postgres_matches_redis: bool
    tickets_by_state: dict[str, int]
    #: Worst delay between a hold's deadline and its release by the sweep, ms.
    release_lateness_ms: int
    problems: list[str]
    #: Tickets held before an earlier ticket was (admission must follow join order).
    admitted_out_of_order: int = 0
    ok: bool


class CancelBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Cancel a booking: the tickets to cancel by code (left out or null: every live one)."""

    tickets: (
        Annotated[
            list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]],
            msgspec.Meta(max_length=100),
        ]
        | None
    ) = None


class CancellationView(msgspec.Struct, frozen=True):
    """A cancellation and its refund: ``status`` pending (the refund is retried until
    done), refunded or refused."""

    id: str
    booking_id: str
    status: str
    tickets: list[str]
    amount_cents: int
    refund_reference: str | None
    booking_status: str | None
    requested_at: str
    completed_at: str | None


class EventCancellationView(msgspec.Struct, frozen=True):
    """A whole event being cancelled: ``status`` running or done; of its ``bookings``, how
    many are ``refunded``, ``pending`` (the refund is retried) or ``refused`` by the gateway."""

    event_id: str
    status: str
    bookings: int
    refunded: int
    pending: int
    refused: int
    refunded_cents: int
    requested_at: str
    completed_at: str | None
