"""Check-in at the door: staff keys per event, and letting each ticket in once.

The admin gives each event's door staff keys of their own (``sk_…``, shown once,
kept as a SHA-256 hash). A staff key opens nothing but the check-in of its event:
it is not the admin key, and a ticket of another event is unknown to it. A
ticket's code is an opaque string looked up in ``tickets.code``.

Letting a ticket in is one conditional ``UPDATE`` in PostgreSQL (see
``PgStore.check_in``): of any number of scans of one ticket at once, exactly one
lets it in, the others are told when and at which gate it came in.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import msgspec

from engine.catalog import EventCatalog
from engine.errors import (
    AlreadyCheckedIn,
    Conflict,
    Forbidden,
    NotFound,
    TicketBeingCancelled,
    TicketNotLive,
    Unauthorized,
)
from engine.ids import is_valid_id
from engine.metrics import CHECKINS
from storage.log_events import Actor
from storage.pg_records import StaffKeyRow
from storage.pg_store import PgStore

__all__ = ["CheckedIn", "Checkin", "CheckinCounts", "NewStaffKey", "StaffKey", "hash_staff_key"]

#: Every staff key starts with this (so a leaked one is recognised for what it is).
STAFF_KEY_PREFIX = "sk_"


class StaffKey(msgspec.Struct, frozen=True):
    """A staff key as the admin sees it: never the key itself."""

    id: str
    event_id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


class NewStaffKey(msgspec.Struct, frozen=True):
    """A staff key just made: the only time its ``key`` is known."""

    staff_key: StaffKey
    key: str


class CheckedIn(msgspec.Struct, frozen=True):
    """A ticket let in by this scan: its seat, when and where."""

    code: str
    event_id: str
    section: str
    row: str
    number: int
    gate: str
    checked_in_at: datetime


class CheckinCounts(msgspec.Struct, frozen=True):
    """An event at the door: live tickets, those in, and those in by gate."""

    event_id: str
    live_tickets: int
    checked_in: int
    gates: dict[str, int]


def hash_staff_key(key: str) -> bytes:
    """What is stored of a staff key (keys are 256 random bits: a plain hash is enough)."""
    return hashlib.sha256(key.encode()).digest()


def _staff_key(row: StaffKeyRow) -> StaffKey:
    return StaffKey(row.id, row.event_id, row.label, row.created_at, row.revoked_at)


class Checkin:
    """Staff keys of each event, and tickets scanned at its door."""

    def __init__(self, pg: PgStore, catalog: EventCatalog) -> None:
        self._pg = pg  # tickets and staff keys
        self._catalog = catalog  # events (a key is made for a known one only)

    async def create_key(
        self, event_id: str, label: str, actor: Actor | None = None
    ) -> NewStaffKey:
        """A new staff key of ``event_id`` (NotFound if there is no such event)."""
        await self._catalog.get(event_id)
        key = STAFF_KEY_PREFIX + secrets.token_urlsafe(32)
        row = await self._pg.insert_staff_key(
            "sk" + secrets.token_hex(6), event_id, label, hash_staff_key(key), actor
        )
        return NewStaffKey(_staff_key(row), key)

    async def keys(self, event_id: str) -> list[StaffKey]:
        """The staff keys of ``event_id`` in force, oldest first."""
        await self._catalog.get(event_id)
        return [_staff_key(row) for row in await self._pg.staff_keys(event_id)]

    async def revoke_key(self, event_id: str, key_id: str, actor: Actor | None = None) -> StaffKey:
        """Revoke a staff key of ``event_id`` at once (again: no change); NotFound if none."""
        await self._catalog.get(event_id)
        row = (
            await self._pg.revoke_staff_key(event_id, key_id, actor)
            if is_valid_id(key_id)
            else None
        )
        if row is None:
            raise NotFound(f"no staff key {key_id!r} for event {event_id!r}")
        return _staff_key(row)

    async def check_in(self, staff_key: str, code: str, gate: str) -> CheckedIn:
        """Let the ticket ``code`` in at ``gate``; the seat.

        Unauthorized: the key is no staff key in force. NotFound: its event has no such
        ticket. TicketNotLive: the ticket was cancelled. TicketBeingCancelled: a
        cancellation of it is pending (its refund under way). AlreadyCheckedIn: it was let
        in before (when and at which gate).
        """
        if not staff_key.startswith(STAFF_KEY_PREFIX):
            raise Unauthorized("a staff key of this event is required")
        scanned = await self._pg.check_in(hash_staff_key(staff_key), code, gate)
        if scanned is None:
            raise Unauthorized("a staff key of this event is required")
        event_id, ticket = scanned
        if ticket is None:
            CHECKINS.labels(event_id, "unknown").inc()
            raise NotFound("no ticket with this code for this event")
        if not ticket.live:
            CHECKINS.labels(event_id, "cancelled").inc()
            raise TicketNotLive("this ticket was cancelled")
        if ticket.cancelling:
            CHECKINS.labels(event_id, "cancelling").inc()
            raise TicketBeingCancelled("this ticket is being cancelled and refunded")
        when = ticket.checked_in_at
        if when is None:  # live and not in, yet not let in: it changed between the two reads
            raise Conflict("the ticket changed while it was scanned: scan it again")
        seat = (ticket.section, ticket.seat_row, ticket.seat_number)
        if not ticket.admitted:
            CHECKINS.labels(event_id, "already_in").inc()
            raise AlreadyCheckedIn(
                f"already in: at {when:%H:%M:%S} UTC at gate {ticket.gate}",
                checked_in_at=when,
                gate=ticket.gate or "",
                seat=seat,
            )
        CHECKINS.labels(event_id, "admitted").inc()
        return CheckedIn(code, event_id, *seat, gate=gate, checked_in_at=when)

    async def authorize_counts(self, event_id: str, staff_key: str) -> None:
        """A staff key may read its own event's door counts: Unauthorized when it is no staff
        key in force, Forbidden when it is another event's (NotFound: no such event)."""
        await self._catalog.get(event_id)
        if not staff_key.startswith(STAFF_KEY_PREFIX):
            raise Unauthorized("the admin key or a staff key of this event is required")
        owner = await self._pg.staff_key_event(hash_staff_key(staff_key))
        if owner is None:
            raise Unauthorized("the admin key or a staff key of this event is required")
        if owner != event_id:
            raise Forbidden("this staff key is for another event")

    async def counts(self, event_id: str) -> CheckinCounts:
        """How many of ``event_id``'s live tickets are in (NotFound if no such event)."""
        await self._catalog.get(event_id)
        row = await self._pg.checkin_counts(event_id)
        return CheckinCounts(event_id, row.live, row.checked_in, row.gates)
