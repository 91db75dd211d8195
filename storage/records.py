"""What the storage layer hands back: small typed records, decoded once at the edge."""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = [
    "AdmissionCaps",
    "AdmitSummary",
    "BeginPaymentResult",
    "BeginResult",
    "Confirmed",
    "EventActivity",
    "EventSnapshot",
    "EventState",
    "EventStatus",
    "ExpireSummary",
    "Expired",
    "JoinResult",
    "Left",
    "NotifyBatch",
    "Outcome",
    "Prompted",
    "SectionCounts",
    "SoldOut",
    "StateChange",
    "TicketRecord",
    "TicketStatus",
]


class EventState(StrEnum):
    """An event's admission state, as the scripts keep it in its meta hash."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    PAUSED = "paused"
    SOLD_OUT = "sold_out"
    CLOSED = "closed"


class TicketStatus(StrEnum):
    """Where a ticket stands: waiting, holding seats, or one of its terminal outcomes."""

    QUEUED = "queued"
    HELD = "held"
    PAYING = "paying"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    SOLD_OUT = "sold_out"
    LEFT = "left"

    @property
    def holds_seats(self) -> bool:
        """Whether seats are held for the ticket (it may pay)."""
        return self in (TicketStatus.HELD, TicketStatus.PAYING)


class JoinResult(msgspec.Struct, frozen=True):
    """A client's ticket seq (0 when refused), status, the serving counter, and its place.

    ``status`` is the ticket's :class:`TicketStatus` value, or ``closed`` / ``rate_limited``
    when the join was refused. ``place`` is the ticket's place in line (its position is
    place - serving); 0 while it waits in the pre-queue for the opening shuffle.
    """

    seq: int
    status: str = msgspec.field(name="st")
    serving: int = 0
    place: int = 0


class AdmitSummary(msgspec.Struct, frozen=True):
    """What one admission call decided and the event's counters after it."""

    state: EventState
    admitted: int
    sold_out: int
    skipped: int
    serving: int
    seq: int
    active: int
    free: int
    held: int
    sold: int
    reason: str
    notify_id: str = "0-0"
    next_ms: int = 0  # with reason "rate": when the next admission is allowed (ms)
    left: int = 0  # clients skipped because they left (gone longer than the grace)
    released: int = 0  # holds that were due, released by this call before admitting
    #: Prompts the realtime servers had yet to deliver, as this call counted them when
    #: paced (0 unpaced, or with no server reporting).
    backlog: int = 0
    #: (seq, traceparent) of each traced join admitted by this call (tracing on only).
    traces: list[tuple[int, str]] = []


class AdmissionCaps(msgspec.Struct, frozen=True):
    """An event's admission caps in force (``rate_per_min`` 0: no rate cap)."""

    max_active: int
    rate_per_min: int


class EventActivity(msgspec.Struct, frozen=True):
    """What a worker needs to know to decide whether an event needs it."""

    state: EventState
    #: Tickets handed out so far (the line's newest entry, pre-queue included).
    seq: int
    #: Tickets decided so far.
    serving: int
    #: Holds open (held or paying).
    holds: int
    #: When the sale opens, ms since the epoch.
    opens_at_ms: int = 0

    @property
    def waiting(self) -> int:
        """Clients still waiting, in line or in the pre-queue."""
        return self.seq - self.serving


class ExpireSummary(msgspec.Struct, frozen=True):
    """Holds released by one sweep, when the next is due (-1: none open), holds open, clients waiting."""

    released: int
    next_ms: int
    active: int = 0
    waiting: int = 0
    #: How long a hold lasts in this event (no new hold falls due sooner), ms.
    hold_ms: int = 0


class StateChange(msgspec.Struct, frozen=True):
    """The result of pause/resume/close: whether it applied, and the state now."""

    ok: bool
    state: EventState


class BeginResult(StrEnum):
    """What begin_payment found for a hold."""

    OK = "ok"  # claimed for this payment
    PAID = "paid"  # paid already (by this key or another)
    IN_PROGRESS = "in_progress"  # another payment (or this one, before a crash) is running
    EXPIRED = "expired"  # the hold ran out
    UNKNOWN = "unknown"  # no such hold


# Records decoded from the scripts' JSON keep the scripts' short names on the wire
# (``field(name=...)``): they are written once per hold inside Redis, where every byte
# of a ticket record is kept for the whole sale.


class BeginPaymentResult(msgspec.Struct, frozen=True):
    """The answer of begin_payment for one hold."""

    result: BeginResult = msgspec.field(name="r")
    section: str = ""
    seats: list[int] = []
    amount_cents: int = msgspec.field(default=0, name="amt")
    client_id: str = msgspec.field(default="", name="c")
    expires_ms: int = msgspec.field(default=0, name="exp")
    paying_until_ms: int = msgspec.field(default=0, name="pu")
    idempotency_key: str | None = msgspec.field(default=None, name="k")
    booking_id: str | None = msgspec.field(default=None, name="bk")


class TicketRecord(msgspec.Struct, frozen=True):
    """A ticket's state as the scripts keep it (one JSON record per ticket)."""

    status: TicketStatus = msgspec.field(name="st")
    quantity: int = msgspec.field(name="q")
    #: The section asked for at join ("" for any).
    requested_section: str = msgspec.field(name="s")
    client_id: str = msgspec.field(name="c")
    joined_ms: int = msgspec.field(name="j")
    #: The section of the held (or sold) seats, once admitted.
    held_section: str | None = msgspec.field(default=None, name="hs")
    seats: list[int] = []
    amount_cents: int = msgspec.field(default=0, name="amt")
    expires_ms: int = msgspec.field(default=0, name="exp")
    #: While paying: the end of the payment window (the sweep keeps the hold until then).
    paying_until_ms: int | None = msgspec.field(default=None, name="pu")
    idempotency_key: str | None = msgspec.field(default=None, name="k")
    booking_id: str | None = msgspec.field(default=None, name="bk")
    #: When the sweep released the hold (ms).
    released_ms: int | None = msgspec.field(default=None, name="rt")
    #: Place in line of a shuffled pre-queue ticket (else: its seq).
    drawn_place: int | None = msgspec.field(default=None, name="pl")
    #: While queued: when the client's connection was lost (ms).
    gone_ms: int | None = msgspec.field(default=None, name="gone")
    #: The hold's number, in the order holds were made.
    hold_number: int | None = msgspec.field(default=None, name="an")
    #: The verified person the ticket belongs to (events that require identity).
    person: str | None = msgspec.field(default=None, name="pn")
    #: Seats of a confirmed ticket cancelled and back on sale (no longer in ``seats``).
    cancelled: list[int] = msgspec.field(default=[], name="cx")

    @property
    def deadline_ms(self) -> int:
        """When the hold was due for release: the payment window's end while paying."""
        return self.paying_until_ms or self.expires_ms


class EventSnapshot(msgspec.Struct, frozen=True):
    """An event's meta and stats hashes as the scripts keep them (for the scripts' tests)."""

    meta: dict[str, str]
    stats: dict[str, int]


class SectionCounts(msgspec.Struct, frozen=True):
    """Seats of one section by state."""

    capacity: int = 0
    free: int = 0
    held: int = 0
    sold: int = 0


class EventStatus(msgspec.Struct, frozen=True):
    """An event's state, admission caps and counters, read in one round trip."""

    state: EventState
    #: Whether the opening shuffle has drawn the pre-queue's places.
    opened: bool
    opens_at_ms: int
    hold_ms: int
    max_active: int
    rate_per_min: int
    #: Tickets handed out (the newest place in line, pre-queue included).
    issued: int
    #: Tickets decided (admitted, sold out or skipped): the serving counter.
    serving: int
    admitted: int
    expired: int
    confirmed: int
    #: All sections together.
    seats: SectionCounts
    sections: dict[str, SectionCounts]

    @property
    def waiting(self) -> int:
        """Clients still waiting, in line or in the pre-queue."""
        return self.issued - self.serving

    @property
    def active_holds(self) -> int:
        """Holds open now (admitted, neither paid nor expired)."""
        return self.admitted - self.expired - self.confirmed

    @property
    def seats_may_return(self) -> bool:
        """No seat is free, but open holds may still give some back."""
        return self.seats.free == 0 and self.seats.held > 0


class Prompted(msgspec.Struct, frozen=True, tag="prompt"):
    """Seats were held for the ticket."""

    seq: int
    section: str
    seats: list[int]
    amount_cents: int
    expires_ms: int
    #: The traced join's W3C traceparent ("" when not traced).
    traceparent: str = ""


class SoldOut(msgspec.Struct, frozen=True, tag="sold_out"):
    """Nothing is left for the ticket."""

    seq: int


class Expired(msgspec.Struct, frozen=True, tag="expired"):
    """The ticket's hold ran out."""

    seq: int


class Confirmed(msgspec.Struct, frozen=True, tag="confirmed"):
    """The ticket's payment completed."""

    seq: int
    booking_id: str
    #: The traced payment's W3C traceparent ("" when not traced).
    traceparent: str = ""


class Left(msgspec.Struct, frozen=True, tag="left"):
    """The client was gone longer than the grace period when its turn came."""

    seq: int


Outcome = Prompted | SoldOut | Expired | Confirmed | Left


class NotifyBatch(msgspec.Struct, frozen=True):
    """One entry of an event's notify stream: the outcomes of one script call."""

    entry_id: str
    kind: str  # "admit", "expire", "confirm", "return" or "close": the script that wrote it
    serving: int
    outcomes: list[Outcome]
    #: The sale is over (closed): every client still waiting after this place (and in the
    #: pre-queue) is told a final "sold out".
    sold_out_after: int | None = None
    #: The event sold out for now: the clients still waiting after this place keep their
    #: places, and get seats in order if cancelled ones come back.
    sold_out_wait: int | None = None
