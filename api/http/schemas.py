"""REST bodies: what clients send (decoded strictly) and what they get back."""

from __future__ import annotations

from typing import Annotated

import msgspec

from engine.audit import Audit
from engine.bookings import Ticket
from engine.events import EventSpec
from engine.sales import SectionSale

__all__ = [
    "AdmissionBody",
    "AdmissionView",
    "AuditView",
    "BookingView",
    "CreatedEvent",
    "ErrorBody",
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


#: Seats of one section by state: the engine's record is the wire shape.
SectionAvailability = SectionSale


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


#: One seat of a booking, with the code the door scans: the engine's record is the wire shape.
TicketView = Ticket


class BookingView(msgspec.Struct, frozen=True):
    """A booking and its tickets."""

    id: str
    event_id: str
    hold_id: str
    status: str
    amount_cents: int
    created_at: str
    tickets: list[TicketView]


__all__ += ["EventSpec"]


class ReleasedView(msgspec.Struct, frozen=True):
    """A hold given back by its holder."""

    hold_id: str
    status: str


class StateView(msgspec.Struct, frozen=True):
    """An event's admission state after pause or resume."""

    id: str
    state: str


class AuditView(Audit, frozen=True, kw_only=True):
    """The invariants of an event checked now; ``ok`` when every one holds."""

    ok: bool
