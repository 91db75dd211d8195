"""REST bodies: what clients send (decoded strictly) and what they get back.

These are the interface's wire types, as ``realtime/protocol.py`` is for the waiting
room: they import nothing of the project, so the Python client (``api.client``)
decodes into them without loading the engine. The routes build them from the
engine's records; ``tests/api/test_openapi.py`` checks that each view keeps the
fields of the record it shows. An event's spec (the body of ``POST /v1/events``)
is the engine's ``EventSpec``, which validates it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "AdmissionBody",
    "AdmissionView",
    "AuditView",
    "BookingView",
    "CancelBody",
    "CancellationView",
    "ChallengeBody",
    "ChallengeView",
    "CheckedInBeforeBody",
    "CheckinBody",
    "CheckinCountsView",
    "CheckinView",
    "CreatedEvent",
    "CreatedStaffKey",
    "CreatedWebhook",
    "EmailCodeBody",
    "EmailCodeSent",
    "EmailVerifyBody",
    "ErrorBody",
    "EventCancellationView",
    "EventList",
    "EventReport",
    "EventSummary",
    "EventView",
    "IdentityTokenView",
    "PaymentBody",
    "ReleasedView",
    "ReportMinute",
    "ReportSection",
    "ReportTotals",
    "SectionAvailability",
    "StaffKeyBody",
    "StaffKeyList",
    "StaffKeyView",
    "StateView",
    "TicketKeyView",
    "TicketView",
    "WebhookBody",
    "WebhookList",
    "WebhookView",
]

#: A mail address as a payment accepts it: ASCII, one @, a dotted domain (no display name);
#: the lookahead refuses the line break that ``$`` would let through at the end.
EMAIL_PATTERN = (
    r"^(?!.*\n)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


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
    #: What a join must bring. ``identity``: how a buyer proves who it is (``jwt``: a
    #: token the operator's site signs; ``email``: a code mailed by
    #: ``POST .../identity/email``, exchanged at ``.../identity/verify``; null: nothing).
    identity: Literal["jwt", "email"] | None = None
    #: Seats one verified person may hold or buy over all its orders (0: no limit).
    max_per_person: int = 0
    #: The join challenge's difficulty now (``GET .../challenge``; 0: joins need none).
    challenge_difficulty: int = 0


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


class PaymentBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Pay for a hold with a card token (sandbox: tok_visa, tok_declined, tok_timeout)."""

    card_token: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    #: Where to send the confirmation mail with the tickets (optional).
    email: Annotated[str, msgspec.Meta(max_length=254, pattern=EMAIL_PATTERN)] | None = None


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
    #: Reads this booking (``Authorization: Bearer``) long after the hold token ran out.
    booking_token: str = ""
    #: Until when the booking token reads it, s since the epoch.
    booking_token_expires_s: int = 0
    currency: str = "EUR"  # ISO 4217 code of the amount


class TicketKeyView(msgspec.Struct, frozen=True):
    """The public key that verifies an event's ticket codes offline.

    A code is ``T1.<event>.<booking>.<section>.<position>.<signature>``; the signature is
    Ed25519 (64 bytes, base64url without padding) over everything before its last dot.
    """

    event_id: str
    algorithm: str
    #: The raw 32-byte Ed25519 public key, base64url without padding.
    public_key: str
    code_format: str


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
            list[Annotated[str, msgspec.Meta(min_length=1, max_length=256)]],
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


#: Text a person types or a scanner reads: no control characters.
_NO_CONTROLS = r"^[^\x00-\x1f\x7f]+$"


class StaffKeyBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A staff key to make: who or which door it is for."""

    label: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_CONTROLS)]


class StaffKeyView(msgspec.Struct, frozen=True):
    """A staff key of an event, without the key."""

    id: str
    event_id: str
    label: str
    created_at: str
    revoked_at: str | None = None


class ChallengeBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The join challenge's difficulty: its counter range (0: joins need no proof of work)."""

    difficulty: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]


class ChallengeView(msgspec.Struct, frozen=True):
    """A join challenge (ALTCHA v2: ``parameters`` and ``signature``, as altcha's libraries
    and widget read them) and the event's difficulty now (0: a join needs no solution).
    Solve it, then send the payload (base64 JSON of ``challenge`` and ``solution``) as the
    ``join`` message's ``challenge``."""

    challenge: dict[str, Any]
    difficulty: int


class EmailCodeBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The address to send a one-time code to."""

    email: Annotated[str, msgspec.Meta(max_length=254, pattern=EMAIL_PATTERN)]


class EmailCodeSent(msgspec.Struct, frozen=True):
    """A code is on its way; it works for ``expires_in_s`` seconds."""

    expires_in_s: int


class EmailVerifyBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The address and the code mailed to it."""

    email: Annotated[str, msgspec.Meta(max_length=254, pattern=EMAIL_PATTERN)]
    code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]


class IdentityTokenView(msgspec.Struct, frozen=True):
    """The identity token of a verified address: send it as the ``join`` message's
    ``identity``; it joins this event until ``expires_at``."""

    token: str
    expires_at: str


class CreatedStaffKey(msgspec.Struct, frozen=True):
    """A staff key just made: ``key`` is shown this once and never again."""

    id: str
    event_id: str
    label: str
    created_at: str
    key: str


class StaffKeyList(msgspec.Struct, frozen=True):
    """The staff keys of an event in force, oldest first."""

    keys: list[StaffKeyView]


class CheckinBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A ticket scanned at the door: its code (as printed or in its QR code) and the gate."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_NO_CONTROLS)]
    gate: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_CONTROLS)]


class CheckinView(msgspec.Struct, frozen=True):
    """A ticket let in now: the seat to send its holder to."""

    code: str
    event_id: str
    section: str
    row: str
    number: int
    gate: str
    checked_in_at: str


class CheckedInBeforeBody(msgspec.Struct, frozen=True):
    """409 of a ticket let in before: when (ISO 8601, UTC) and at which gate, and its seat."""

    error: str
    message: str
    checked_in_at: str
    gate: str
    section: str
    row: str
    number: int


class CheckinCountsView(msgspec.Struct, frozen=True):
    """An event at the door: its live tickets, how many are in, how many came in by gate."""

    event_id: str
    live_tickets: int
    checked_in: int
    gates: dict[str, int]


class WebhookBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A URL to POST the event's log to: absolute http(s)."""

    url: Annotated[str, msgspec.Meta(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")]
    #: ``true``: up to 50 entries per POST, the body ``{"entries": [...]}`` in seq order,
    #: named by ``Booking-Entries: <event id>/<first>-<last>``; delivered or retried as one.
    #: ``false`` (the default): one entry per POST, the body the entry.
    batch: bool = False


class WebhookView(msgspec.Struct, frozen=True):
    """A webhook of an event and its queue (never its secret)."""

    id: str
    event_id: str
    url: str
    #: ``active``; ``dead``: a delivery failed its last attempt, its queue waits in order
    #: for the admin's redeliver.
    state: str
    created_at: str
    #: Entries waiting to be sent, dead (given up on), and delivered.
    pending: int
    dead: int
    delivered: int
    #: Sent in batches of entries (``{"entries": [...]}``), or one entry per POST.
    batch: bool


class CreatedWebhook(msgspec.Struct, frozen=True):
    """A webhook just registered: ``secret`` (its deliveries' signing key) is shown this once
    and never again."""

    id: str
    event_id: str
    url: str
    state: str
    created_at: str
    secret: str
    #: Sent in batches of entries (``{"entries": [...]}``), or one entry per POST.
    batch: bool


class WebhookList(msgspec.Struct, frozen=True):
    """The webhooks of an event, oldest first."""

    webhooks: list[WebhookView]


class ReportTotals(msgspec.Struct, frozen=True):
    """An event's totals. Money is in the currency's minor units (cents)."""

    #: Bookings made, tickets sold, what was paid for them.
    bookings: int
    tickets_sold: int
    revenue_cents: int
    #: Cancellations done (refunded), whole bookings cancelled, tickets cancelled, refunded.
    cancellations: int
    bookings_cancelled: int
    tickets_cancelled: int
    refunded_cents: int
    #: ``revenue_cents - refunded_cents``.
    net_revenue_cents: int
    #: Refunds the payment provider refused for good (their tickets stay live).
    refunds_refused: int
    #: Tickets let in at the door.
    checked_in: int
    #: The waiting room, from the per-minute admission summaries: joins, holds given,
    #: holds ended unpaid, payments confirmed.
    joined: int
    admitted: int
    expired: int
    confirmed: int


class ReportSection(msgspec.Struct, frozen=True):
    """One section's totals (minor units)."""

    section: str
    capacity: int
    price_cents: int
    tickets_sold: int
    revenue_cents: int
    tickets_cancelled: int
    refunded_cents: int
    net_revenue_cents: int
    checked_in: int


class ReportMinute(msgspec.Struct, frozen=True):
    """What happened in one minute (RFC 3339, its start, UTC): only minutes with activity."""

    minute: str
    bookings: int
    tickets_sold: int
    revenue_cents: int
    cancellations: int
    tickets_cancelled: int
    refunded_cents: int
    checked_in: int
    joined: int
    admitted: int
    expired: int
    confirmed: int


class EventReport(msgspec.Struct, frozen=True):
    """An event's sales, refunds, check-ins and admissions, built from its event log: in
    total, per section (in the event's order) and per minute."""

    event_id: str
    name: str
    #: ISO 4217: the currency of every ``*_cents`` field.
    currency: str
    #: The sale's state as the log last told it.
    state: str
    #: The log entries the report counts (1..as_of_seq), and how many the log holds: the
    #: report is behind by the difference, while the projector catches up.
    as_of_seq: int
    log_seq: int
    totals: ReportTotals
    sections: list[ReportSection]
    minutes: list[ReportMinute]
