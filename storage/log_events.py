"""The event log's entries as typed values: one tagged union, one struct per type.

A leaf (it imports nothing of the program): the PostgreSQL store writes and reads
these, the engine re-exports them (``engine/eventlog.py``), and ``docs/events.md``
is generated from them (``python -m storage.log_events``). Every entry carries its
event's id and its number in that event's log (``seq``: 1, 2, 3, ... in commit
order, no gaps), so a consumer that sees (event_id, seq) twice knows it for a
duplicate, and one that sees a gap knows it missed something.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Union

import msgspec

__all__ = [
    "ENTRY_TYPES",
    "Actor",
    "LogEntry",
    "decode_entry",
    "events_markdown",
]


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who made a change, when a person did: the admin's actions, a buyer's cancellation."""

    #: ``"admin"``: the holder of the admin key; ``"buyer"``: the holder of the booking's
    #: hold token or booking token (a buyer's own cancellation).
    who: str
    #: The request's id (``X-Request-Id``).
    request_id: str | None = None
    #: The address the request came from.
    client_ip: str | None = None


class _Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A payload: unknown fields are refused, so a writer and its struct cannot drift."""


class SectionCapacity(_Payload, frozen=True):
    """One section of a new event."""

    id: str
    capacity: int
    price_cents: int


class EventCreatedPayload(_Payload, frozen=True):
    name: str
    opens_at: datetime
    currency: str
    max_per_order: int
    hold_seconds: int
    max_active_holds: int
    sections: list[SectionCapacity]


class SaleStatePayload(_Payload, frozen=True):
    #: The state the sale is in after the change.
    state: str


class AdmissionCapsPayload(_Payload, frozen=True):
    #: The caps in force after the change (0: no rate cap).
    max_active_holds: int
    admissions_per_minute: int


class AdmissionSummaryPayload(_Payload, frozen=True):
    #: The minute summarised (its start, UTC).
    minute: datetime
    #: Joins, admissions (holds), holds ended unpaid (expired or given back), payments
    #: confirmed, during that minute.
    joined: int
    admitted: int
    expired: int
    confirmed: int
    #: The same counters since the sale began.
    joined_total: int
    admitted_total: int
    expired_total: int
    confirmed_total: int


class SoldTicket(_Payload, frozen=True):
    """One ticket of a new booking: its section and what it cost."""

    code: str
    section: str
    price_cents: int


class BookingConfirmedPayload(_Payload, frozen=True):
    booking_id: str
    hold_id: str
    amount_cents: int
    mail_queued: bool
    #: Its tickets (version 2; entries of version 1 have none).
    tickets: list[SoldTicket] = []


class PaymentClaimedPayload(_Payload, frozen=True):
    idempotency_key: str
    hold_id: str


class PaymentStepPayload(_Payload, frozen=True):
    idempotency_key: str
    hold_id: str
    gateway_ref: str | None
    refund_ref: str | None
    amount_cents: int


class ReconcileConflictPayload(_Payload, frozen=True):
    booking_id: str
    hold_id: str
    reason: str
    refund_needed: bool


class StaffKeyPayload(_Payload, frozen=True):
    staff_key_id: str
    label: str


class TicketCheckedInPayload(_Payload, frozen=True):
    code: str
    booking_id: str
    gate: str
    staff_key_id: str
    checked_in_at: datetime


class ConfirmationMailedPayload(_Payload, frozen=True):
    booking_id: str
    attempts: int


class CancellationRequestedPayload(_Payload, frozen=True):
    cancellation_id: str
    booking_id: str
    #: The tickets being cancelled, by code.
    codes: list[str]
    #: What is to be refunded.
    amount_cents: int
    by_admin: bool


class BookingCancelledPayload(_Payload, frozen=True):
    cancellation_id: str
    booking_id: str
    codes: list[str]
    #: What was refunded.
    amount_cents: int
    refund_ref: str | None
    #: The booking after the cancellation: ``cancelled`` once no ticket is left, else
    #: ``confirmed`` with fewer live tickets.
    booking_status: str | None


class RefundRefusedPayload(_Payload, frozen=True):
    cancellation_id: str
    booking_id: str
    reason: str


class EventCancelRequestedPayload(_Payload, frozen=True):
    """Nothing more than the entry's event."""


class EventCancelledPayload(_Payload, frozen=True):
    #: Bookings refunded, and the cents refunded, over the event's cancellation.
    refunded: int
    refunded_cents: int


class WebhookPayload(_Payload, frozen=True):
    webhook_id: str
    url: str


class _Entry(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """What every entry carries."""

    #: The payload's schema version.
    version: int = 1
    event_id: str
    #: The entry's number in its event's log: 1, 2, 3, ... in commit order.
    seq: int
    #: When it was written.
    at: datetime
    actor: Actor | None = None


class EventCreated(_Entry, frozen=True, tag="event_created"):
    """An event was created (its spec; seats are numbered from it)."""

    payload: EventCreatedPayload


class SaleOpened(_Entry, frozen=True, tag="sale_opened"):
    """The sale opened (seen by a worker after the opening time's first admission)."""

    payload: SaleStatePayload


class SalePaused(_Entry, frozen=True, tag="sale_paused"):
    """The admin paused admission."""

    payload: SaleStatePayload


class SaleResumed(_Entry, frozen=True, tag="sale_resumed"):
    """The admin resumed admission."""

    payload: SaleStatePayload


class SaleClosed(_Entry, frozen=True, tag="sale_closed"):
    """The admin closed the sale."""

    payload: SaleStatePayload


class SaleSoldOut(_Entry, frozen=True, tag="sale_sold_out"):
    """Every seat was sold (seen by a worker)."""

    payload: SaleStatePayload


class AdmissionCapsChanged(_Entry, frozen=True, tag="admission_caps_changed"):
    """The admin changed the admission caps."""

    payload: AdmissionCapsPayload


class AdmissionSummary(_Entry, frozen=True, tag="admission_summary"):
    """A minute of the waiting room (joins, holds, expiries), summarised by a worker."""

    payload: AdmissionSummaryPayload


class BookingConfirmed(_Entry, frozen=True, tag="booking_confirmed"):
    """A paid hold became a booking (written with it)."""

    payload: BookingConfirmedPayload


class PaymentClaimed(_Entry, frozen=True, tag="payment_claimed"):
    """A payment's saga began: the hold is claimed, the card about to be charged."""

    payload: PaymentClaimedPayload


class PaymentDeclined(_Entry, frozen=True, tag="payment_declined"):
    """The card was declined; nothing charged."""

    payload: PaymentStepPayload


class PaymentVoided(_Entry, frozen=True, tag="payment_voided"):
    """A payment stopped halfway was voided; nothing charged."""

    payload: PaymentStepPayload


class PaymentCompensating(_Entry, frozen=True, tag="payment_compensating"):
    """Charged, but no booking can be made: the charge is being refunded."""

    payload: PaymentStepPayload


class PaymentRefunded(_Entry, frozen=True, tag="payment_refunded"):
    """A charge without a booking was refunded."""

    payload: PaymentStepPayload


class ReconcileConflict(_Entry, frozen=True, tag="reconcile_conflict"):
    """A booking PostgreSQL holds that Redis could not take: a refund to make."""

    payload: ReconcileConflictPayload


class StaffKeyCreated(_Entry, frozen=True, tag="staff_key_created"):
    """The admin made a door staff key."""

    payload: StaffKeyPayload


class StaffKeyRevoked(_Entry, frozen=True, tag="staff_key_revoked"):
    """The admin revoked a door staff key."""

    payload: StaffKeyPayload


class TicketCheckedIn(_Entry, frozen=True, tag="ticket_checked_in"):
    """A ticket was let in at the door."""

    payload: TicketCheckedInPayload


class ConfirmationMailed(_Entry, frozen=True, tag="confirmation_mailed"):
    """A booking's confirmation mail was sent."""

    payload: ConfirmationMailedPayload


class CancellationRequested(_Entry, frozen=True, tag="cancellation_requested"):
    """A buyer or the admin asked to cancel a booking or some of its tickets (recorded
    before any refund). Its actor is the admin or the buyer who asked; null when the
    engine cancelled (a booking whose payment conflicted, the bookings of a cancelled event)."""

    payload: CancellationRequestedPayload


class BookingCancelled(_Entry, frozen=True, tag="booking_cancelled"):
    """A cancellation was refunded and done: its tickets are no longer live."""

    payload: BookingCancelledPayload


class RefundRefused(_Entry, frozen=True, tag="refund_refused"):
    """The gateway refused a cancellation's refund for good: the tickets stay live."""

    payload: RefundRefusedPayload


class EventCancelRequested(_Entry, frozen=True, tag="event_cancel_requested"):
    """The admin cancelled the whole event: the sale closes, every booking is refunded."""

    payload: EventCancelRequestedPayload


class EventCancelled(_Entry, frozen=True, tag="event_cancelled"):
    """Every booking of a cancelled event was refunded."""

    payload: EventCancelledPayload


class WebhookRegistered(_Entry, frozen=True, tag="webhook_registered"):
    """The admin registered a webhook URL (its secret is never logged)."""

    payload: WebhookPayload


class WebhookRemoved(_Entry, frozen=True, tag="webhook_removed"):
    """The admin removed a webhook."""

    payload: WebhookPayload


class WebhookRedelivered(_Entry, frozen=True, tag="webhook_redelivered"):
    """The admin sent a dead webhook's queue again."""

    payload: WebhookPayload


LogEntry = Union[  # noqa: UP007 (a runtime union for msgspec)
    EventCreated,
    SaleOpened,
    SalePaused,
    SaleResumed,
    SaleClosed,
    SaleSoldOut,
    AdmissionCapsChanged,
    AdmissionSummary,
    BookingConfirmed,
    PaymentClaimed,
    PaymentDeclined,
    PaymentVoided,
    PaymentCompensating,
    PaymentRefunded,
    ReconcileConflict,
    StaffKeyCreated,
    StaffKeyRevoked,
    TicketCheckedIn,
    ConfirmationMailed,
    CancellationRequested,
    BookingCancelled,
    RefundRefused,
    EventCancelRequested,
    EventCancelled,
    WebhookRegistered,
    WebhookRemoved,
    WebhookRedelivered,
]

#: Every entry type by its ``type``.
ENTRY_TYPES: dict[str, type[_Entry]] = {
    str(cls.__struct_config__.tag): cls
    for cls in LogEntry.__args__  # type: ignore[attr-defined]
}

_DECODER = msgspec.json.Decoder(LogEntry)


def decode_entry(data: bytes | str) -> LogEntry:
    """An entry from its JSON (a relayed body); msgspec.ValidationError if it is none."""
    result: LogEntry = _DECODER.decode(data)
    return result


def entry_json(
    kind: str,
    version: int,
    event_id: str,
    seq: int,
    at: datetime,
    actor: str | None,
    payload: str,
) -> bytes:
    """The JSON of an entry from its stored columns (``actor`` and ``payload`` as JSON text).

    Built without decoding the payload, so a type this module does not know yet is still
    relayed as written.
    """
    head = msgspec.json.encode(
        {"type": kind, "version": version, "event_id": event_id, "seq": seq, "at": at}
    )
    return b"".join(
        (
            head[:-1],
            b',"actor":',
            actor.encode() if actor is not None else b"null",
            b',"payload":',
            payload.encode(),
            b"}",
        )
    )


def _type_name(annotation: Any) -> str:
    """A field's type as the docs show it."""
    if isinstance(annotation, type):
        names = {"str": "string", "int": "integer", "bool": "boolean", "datetime": "RFC 3339 time"}
        return names.get(annotation.__name__, annotation.__name__)
    text = str(annotation).replace("datetime.datetime", "RFC 3339 time").replace("NoneType", "null")
    text = re.sub(r"[\w]+\.(?=\w)", "", text)  # module prefixes
    text = text.replace("str", "string").replace("int", "integer").replace("None", "null")
    return text.replace(" | ", " or ")


def events_markdown() -> str:
    """``docs/events.md``, generated from the structs."""
    lines = [
        "# Event log entries",
        "",
        "Generated from `storage/log_events.py` by `python -m storage.log_events > docs/events.md`",
        "(`tests/storage/test_event_log.py` fails when this page and the structs differ).",
        "",
        "Every entry is one JSON object: the same on the Redis stream `ev:{E}:log` (field",
        '`entry`) and as a webhook\'s body (or, for a webhook registered with `"batch": true`,',
        "each element of its body's `entries`: up to 50 entries of one event in `seq` order per",
        "POST, signed as one body and named by `Booking-Entries: <event id>/<first>-<last>`;",
        "a 2xx answer delivers them all, any other answer fails them all one attempt). Inside",
        "the system the log has two consumers: the",
        "relay (the streams and webhooks) and the projector, which counts the entries into the",
        "read models behind `GET /v1/events/{id}/report` (`booking replay --event E` rebuilds",
        "them from the log).",
        "",
        "| field | type | |",
        "|---|---|---|",
        "| `type` | string | the entry's type (below) |",
    ]
    for field in msgspec.structs.fields(_Entry):
        doc = {
            "version": "the payload's schema version (2 for `booking_confirmed` since it lists "
            "its tickets, 1 for every other type)",
            "event_id": "the event it belongs to",
            "seq": "its number in the event's log: 1, 2, 3, ... in commit order, no gaps",
            "at": "when it was written (RFC 3339, UTC)",
            "actor": "who did it, when a person did: `who` is `admin` (the admin's actions) or "
            "`buyer` (a buyer's own cancellation, with the booking's hold or booking token), "
            "with the request's `request_id` and `client_ip`; null for the engine's own",
        }[field.name]
        lines.append(f"| `{field.name}` | {_type_name(field.type)} | {doc} |")
    lines.append("| `payload` | object | the type's fields (below) |")
    lines.append("")
    lines.append("(`event_id`, `seq`) identifies an entry: a consumer that sees one twice has a")
    lines.append("duplicate (delivery is at least once), one that sees a gap missed something.")
    for kind, cls in ENTRY_TYPES.items():
        payload_type = next(f.type for f in msgspec.structs.fields(cls) if f.name == "payload")
        lines += ["", f"## `{kind}`", "", (cls.__doc__ or "").strip(), ""]
        lines += ["| payload field | type |", "|---|---|"]
        for field in msgspec.structs.fields(payload_type):
            lines.append(f"| `{field.name}` | {_type_name(field.type)} |")
            nested: dict[str, type[_Payload]] = {"sections": SectionCapacity, "tickets": SoldTicket}
            if field.name in nested:
                for sub in msgspec.structs.fields(nested[field.name]):
                    lines.append(f"| `{field.name}[].{sub.name}` | {_type_name(sub.type)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(events_markdown(), end="")
