"""Events and their seats: the specification an organiser gives, and the seat layout.

Seat maps (see ``storage/lua/_prelude.lua``) hold one byte per seat with ``|``
ending each row, best row first; a seat is named by its 1-based byte position.
These functions translate between that layout and rows and seat numbers.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from engine.errors import InvalidRequest

__all__ = [
    "EventSpec",
    "IdentitySpec",
    "RowSpec",
    "SeatLabel",
    "SectionSpec",
    "seat_label",
    "seat_map",
    "validate_event",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
_ID_RE = re.compile(_ID)

Id = Annotated[str, msgspec.Meta(pattern=_ID)]
Count = Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class RowSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A row of seats, numbered 1..seats."""

    label: Annotated[str, msgspec.Meta(min_length=1, max_length=8)]
    seats: Annotated[int, msgspec.Meta(ge=1, le=500)]


class SectionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A priced section: seated rows, or general admission with a capacity."""

    id: Id
    price_cents: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
    name: Annotated[str, msgspec.Meta(max_length=80)] = ""
    rows: list[RowSpec] = []
    capacity: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0

    @property
    def general_admission(self) -> bool:
        """True when the section has a capacity instead of rows."""
        return not self.rows

    @property
    def seat_count(self) -> int:
        """How many seats (or places) the section has."""
        return sum(r.seats for r in self.rows) if self.rows else self.capacity


class IdentitySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a buyer proves who it is before taking a place in line (one place per person).

    ``jwt``: the operator's site signs an identity token (its ``sub`` is the person),
    checked for ``issuer``, ``audience`` and expiry; signed RS256/ES256 with a key
    from ``jwks_url`` (fetched, cached, fetched again for an unknown ``kid``) or with
    ``public_key`` (PEM), else HS256 with the deployment's ``BOOKING_IDENTITY_SECRET``.
    ``email``: the engine sends a one-time code to the buyer's address and signs a token
    of its own for the verified address (``issuer`` and ``audience`` are its own).
    """

    kind: Literal["jwt", "email"]
    issuer: Annotated[str, msgspec.Meta(max_length=256)] = ""
    audience: Annotated[str, msgspec.Meta(max_length=256)] = ""
    jwks_url: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    public_key: Annotated[str, msgspec.Meta(max_length=8192)] = ""


class EventSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an organiser gives to create an event."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    opens_at: datetime
    sections: Annotated[list[SectionSpec], msgspec.Meta(min_length=1, max_length=50)]
    max_per_order: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    hold_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 120
    max_active_holds: Count = 500
    #: The currency of the prices (ISO 4217 code).
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] = "EUR"
    #: How buyers prove who they are (null: anybody may join, one place per client id).
    identity: IdentitySpec | None = None
    #: Seats one verified person may hold or buy over all its orders (0: no limit;
    #: needs ``identity``).
    max_per_person: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    #: The proof of work a join must bring: the counter range of its challenge (about
    #: 0.75 x this many SHA-256 hashes to solve; 0: none). Admins change it live.
    challenge_difficulty: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 0
    #: Refund policy: whether a buyer may cancel a booking with a full refund, and until
    #: when (None: no deadline). An admin may always cancel and refund.
    buyer_refunds: bool = True
    refund_until: datetime | None = None

    def buyer_may_cancel(self, now: datetime) -> bool:
        """Whether the refund policy lets a buyer cancel with a full refund at ``now``."""
        return self.buyer_refunds and (self.refund_until is None or now <= self.refund_until)

    @property
    def capacity(self) -> int:
        """Seats in all sections."""
        return sum(s.seat_count for s in self.sections)

    def section(self, section_id: str) -> SectionSpec | None:
        """The section with this id, or None."""
        return next((s for s in self.sections if s.id == section_id), None)


_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2999, 12, 31, tzinfo=UTC)


def validate_event(spec: EventSpec) -> None:
    """Raise InvalidRequest unless the spec describes a sellable event."""
    if spec.opens_at.tzinfo is None:
        raise InvalidRequest("opens_at must carry a time zone, e.g. 2026-12-01T10:00:00Z")
    ids = [s.id for s in spec.sections]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("section ids must be unique")
    for s in spec.sections:
        if not _ID_RE.match(s.id):
            raise InvalidRequest(f"section id {s.id!r} must match {_ID}")
        if bool(s.rows) == bool(s.capacity):
            raise InvalidRequest(f"section {s.id!r} needs either rows or a capacity, not both")
        labels = [r.label for r in s.rows]
        if len(set(labels)) != len(labels):
            raise InvalidRequest(f"row labels of section {s.id!r} must be unique")
    if spec.capacity > 200_000:
        raise InvalidRequest("an event may have at most 200,000 seats")
    if not _EARLIEST <= spec.opens_at <= _LATEST:
        raise InvalidRequest("opens_at must be between 2000 and 2999")
    if spec.refund_until is not None:
        if spec.refund_until.tzinfo is None:
            raise InvalidRequest("refund_until must carry a time zone, e.g. 2026-12-01T10:00:00Z")
        if not _EARLIEST <= spec.refund_until <= _LATEST:
            raise InvalidRequest("refund_until must be between 2000 and 2999")
    texts = (
        [spec.name]
        + [s.name for s in spec.sections]
        + [r.label for s in spec.sections for r in s.rows]
    )
    if any(not t.isprintable() for t in texts):
        raise InvalidRequest("names and row labels must be printable text")
    _validate_identity(spec)


def _validate_identity(spec: EventSpec) -> None:
    identity = spec.identity
    if identity is None:
        if spec.max_per_person:
            raise InvalidRequest("max_per_person needs identity: a person must be known")
        return
    if identity.kind == "email":
        if identity.issuer or identity.audience or identity.jwks_url or identity.public_key:
            raise InvalidRequest("an email identity takes no issuer, audience or keys")
        return
    if not identity.issuer or not identity.audience:
        raise InvalidRequest("a jwt identity needs the issuer and audience its tokens carry")
    if identity.jwks_url and identity.public_key:
        raise InvalidRequest("give jwks_url or public_key, not both")
    if identity.jwks_url and not re.match(r"^https?://[^\s/]+", identity.jwks_url):
        raise InvalidRequest("jwks_url must be an http(s) URL")
    if identity.public_key:
        try:
            key = load_pem_public_key(identity.public_key.encode())
        except ValueError:
            key = None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise InvalidRequest(
                "public_key must be an RSA or EC PEM public key (-----BEGIN PUBLIC KEY-----)"
            )


def seat_map(section: SectionSpec) -> str:
    """The initial (all free) seat map of a section."""
    if section.general_admission:
        return "0" * section.capacity + "|"
    return "".join("0" * r.seats + "|" for r in section.rows)


@dataclass(frozen=True, slots=True)
class SeatLabel:
    """Where a seat is: its row label ('' for general admission) and number."""

    row: str
    number: int


def seat_label(section: SectionSpec, position: int) -> SeatLabel:
    """Translate a seat-map position (1-based) into its row and number."""
    if section.general_admission:
        if not 1 <= position <= section.capacity:
            raise ValueError(f"position {position} outside section {section.id}")
        return SeatLabel("", position)
    starts = _row_starts(section)
    i = bisect_right(starts, position) - 1
    if i >= 0:
        row = section.rows[i]
        offset = position - starts[i]
        if offset < row.seats:
            return SeatLabel(row.label, offset + 1)
    raise ValueError(f"position {position} outside section {section.id}")


#: Row start positions by section; the section is kept so that its id is not reused.
_ROW_STARTS: dict[int, tuple[SectionSpec, list[int]]] = {}
_ROW_STARTS_KEPT = 1_024


def _row_starts(section: SectionSpec) -> list[int]:
    """The seat-map position of each row's first seat (rows are followed by a "|")."""
    hit = _ROW_STARTS.get(id(section))
    if hit is not None and hit[0] is section:
        return hit[1]
    starts = []
    start = 1
    for row in section.rows:
        starts.append(start)
        start += row.seats + 1
    if len(_ROW_STARTS) >= _ROW_STARTS_KEPT:
        _ROW_STARTS.clear()
    _ROW_STARTS[id(section)] = (section, starts)
    return starts


def seat_positions(section: SectionSpec) -> list[tuple[int, SeatLabel]]:
    """Every seat of a section with its position, best first."""
    if section.general_admission:
        return [(p, SeatLabel("", p)) for p in range(1, section.capacity + 1)]
    out: list[tuple[int, SeatLabel]] = []
    start = 1
    for row in section.rows:
        out += [(start + n, SeatLabel(row.label, n + 1)) for n in range(row.seats)]
        start += row.seats + 1
    return out
