"""What the storage layer hands back: small typed records, decoded once at the edge."""

from __future__ import annotations

import msgspec

__all__ = [
    "AdmissionCaps",
    "AdmitSummary",
    "BeginPaymentResult",
    "Confirmed",
    "EventActivity",
    "EventSnapshot",
    "ExpireSummary",
    "Expired",
    "JoinResult",
    "Left",
    "NotifyBatch",
    "Outcome",
    "Prompted",
    "SoldOut",
    "StateChange",
    "TicketRecord",
]


class JoinResult(msgspec.Struct, frozen=True):
    """A client's ticket seq (0 when refused), status, the serving counter, and its place.

    ``place`` is the ticket's place in line (its position is place - serving); 0
    while it waits in the pre-queue for the opening shuffle.
    """

    seq: int
    st: str
    serving: int = 0
    place: int = 0


class AdmitSummary(msgspec.Struct, frozen=True):
    """What one admission call decided and the event's counters after it."""

    state: str
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


class AdmissionCaps(msgspec.Struct, frozen=True):
    """An event's admission caps in force (``rate_per_min`` 0: no rate cap)."""

    max_active: int
    rate_per_min: int


class EventActivity(msgspec.Struct, frozen=True):
    """What a worker needs to know to decide whether an event needs it."""

    state: str
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
    """The result of pause/resume/close."""

    ok: bool
    state: str


class BeginPaymentResult(msgspec.Struct, frozen=True):
    """The answer of begin_payment for one hold (``r``: ok, paid, in_progress, expired, unknown)."""

    r: str
    section: str = ""
    seats: list[int] = []
    amt: int = 0
    c: str = ""
    exp: int = 0
    pu: int = 0
    k: str | None = None
    bk: str | None = None


class TicketRecord(msgspec.Struct, frozen=True):
    """A ticket's state as the scripts keep it (field names as in the scripts)."""

    st: str
    q: int
    s: str
    c: str
    j: int
    hs: str | None = None
    seats: list[int] = []
    amt: int = 0
    exp: int = 0
    pu: int | None = None
    k: str | None = None
    bk: str | None = None
    rt: int | None = None
    pl: int | None = None  # place in line of a shuffled pre-queue ticket (else: seq)
    gone: int | None = None  # while queued: when the client's connection was lost (ms)
    an: int | None = None  # the hold's number, in the order holds were made


class EventSnapshot(msgspec.Struct, frozen=True):
    """An event's configuration/state hash and its counters."""

    meta: dict[str, str]
    stats: dict[str, int]

    @property
    def state(self) -> str:
        """The event's admission state."""
        return self.meta.get("state", "unknown")


class Prompted(msgspec.Struct, frozen=True, tag="prompt"):
    """Seats were held for the ticket."""

    seq: int
    section: str
    seats: list[int]
    amount_cents: int
    expires_ms: int


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


class Left(msgspec.Struct, frozen=True, tag="left"):
    """The client was gone longer than the grace period when its turn came."""

    seq: int


Outcome = Prompted | SoldOut | Expired | Confirmed | Left


class NotifyBatch(msgspec.Struct, frozen=True):
    """One entry of an event's notify stream: the outcomes of one script call."""

    entry_id: str
    kind: str  # "admit", "expire" or "confirm": the script that wrote it
    serving: int
    outcomes: list[Outcome]
    sold_out_after: int | None = None
