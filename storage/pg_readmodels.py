"""Read models in PostgreSQL: the projector's cursors, what it applies, what a report reads.

The tables (migration ``0009_read_models.sql``) are only ever written through a
:class:`ProjectionTx`: one transaction holding one event's cursor row, in which the
entries after the cursor are read, their counts added to the tables and the cursor
moved. A crash rolls the counts back with the cursor, so nothing is counted twice;
the row lock (``FOR UPDATE SKIP LOCKED`` for the worker's projector, a waiting lock
for a rebuild) keeps two projectors off one event at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from storage.log_events import entry_json
from storage.pg_transaction import Call, held_transaction

__all__ = [
    "EVENT_COUNTERS",
    "MINUTE_COUNTERS",
    "SECTION_COUNTERS",
    "MinuteRow",
    "ProjectionDelta",
    "ProjectionTx",
    "ReadModelStore",
    "ReportRows",
    "SectionRow",
    "StoredEntry",
    "TotalsRow",
]

T = TypeVar("T")

#: The counters of each table, in the report's order.
EVENT_COUNTERS = (
    "bookings",
    "tickets_sold",
    "revenue_cents",
    "cancellations",
    "bookings_cancelled",
    "tickets_cancelled",
    "refunded_cents",
    "refunds_refused",
    "checked_in",
    "joined",
    "admitted",
    "expired",
    "confirmed",
)
SECTION_COUNTERS = (
    "tickets_sold",
    "revenue_cents",
    "tickets_cancelled",
    "refunded_cents",
    "checked_in",
)
MINUTE_COUNTERS = (
    "bookings",
    "tickets_sold",
    "revenue_cents",
    "cancellations",
    "tickets_cancelled",
    "refunded_cents",
    "checked_in",
    "joined",
    "admitted",
    "expired",
    "confirmed",
)


class StoredEntry(msgspec.Struct, frozen=True):
    """One log entry as the projector reads it: its number, type, time and JSON."""

    seq: int
    kind: str
    at: datetime
    body: bytes


class TotalsRow(msgspec.Struct, frozen=True):
    """An event's totals (``rm_events``)."""

    name: str
    currency: str
    state: str
    bookings: int
    tickets_sold: int
    revenue_cents: int
    cancellations: int
    bookings_cancelled: int
    tickets_cancelled: int
    refunded_cents: int
    refunds_refused: int
    checked_in: int
    joined: int
    admitted: int
    expired: int
    confirmed: int


class SectionRow(msgspec.Struct, frozen=True):
    """A section's totals (``rm_sections``)."""

    section: str
    capacity: int
    price_cents: int
    tickets_sold: int
    revenue_cents: int
    tickets_cancelled: int
    refunded_cents: int
    checked_in: int


class MinuteRow(msgspec.Struct, frozen=True):
    """One minute's counts (``rm_minutes``)."""

    minute: datetime
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


class ReportRows(msgspec.Struct, frozen=True):
    """What an event's report is made of; ``totals`` None before its first entry applied."""

    applied_seq: int
    log_seq: int
    totals: TotalsRow | None
    sections: list[SectionRow]
    minutes: list[MinuteRow]


@dataclass
class ProjectionDelta:
    """What a run of entries adds to an event's read models."""

    #: Set by ``event_created``: its name and currency, and its sections in spec order
    #: (id, capacity, price).
    created: tuple[str, str] | None = None
    sections_created: list[tuple[str, int, int]] = field(default_factory=list)
    #: The sale's state after the run, when an entry set it.
    state: str | None = None
    #: Counters added: the event's, per section, per minute.
    totals: dict[str, int] = field(default_factory=dict)
    sections: dict[str, dict[str, int]] = field(default_factory=dict)
    minutes: dict[datetime, dict[str, int]] = field(default_factory=dict)
    #: Tickets sold: (code, section, price).
    tickets: list[tuple[str, str, int]] = field(default_factory=list)

    def count(self, name: str, n: int, minute: datetime) -> None:
        """Add ``n`` to counter ``name`` of the event and of ``minute`` (where each table
        has that counter)."""
        if name in EVENT_COUNTERS:
            self.totals[name] = self.totals.get(name, 0) + n
        if name in MINUTE_COUNTERS:
            row = self.minutes.setdefault(minute, {})
            row[name] = row.get(name, 0) + n

    def count_section(self, section: str, name: str, n: int) -> None:
        """Add ``n`` to counter ``name`` of ``section``."""
        row = self.sections.setdefault(section, {})
        row[name] = row.get(name, 0) + n


def _upsert_add(table: str, keys: Sequence[tuple[str, str]], counters: Sequence[str]) -> str:
    """An INSERT of rows from arrays whose counters are added to a row already there."""
    cols = [k for k, _ in keys] + list(counters)
    types = [t for _, t in keys] + ["bigint"] * len(counters)
    arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    updates = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in counters)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(k for k, _ in keys)}) DO UPDATE SET {updates}"
    )


_ADD_TOTALS = _upsert_add("rm_events", [("event_id", "text")], EVENT_COUNTERS)
_ADD_SECTIONS = _upsert_add(
    "rm_sections", [("event_id", "text"), ("section", "text")], SECTION_COUNTERS
)
_ADD_MINUTES = _upsert_add(
    "rm_minutes", [("event_id", "text"), ("minute", "timestamptz")], MINUTE_COUNTERS
)

_CREATED = """
INSERT INTO rm_events (event_id, name, currency) VALUES ($1, $2, $3)
ON CONFLICT (event_id) DO UPDATE SET name = EXCLUDED.name, currency = EXCLUDED.currency
"""

_SECTIONS_CREATED = """
INSERT INTO rm_sections (event_id, section, ord, capacity, price_cents)
SELECT $1, s, o, c, p FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS t(s, o, c, p)
ON CONFLICT (event_id, section) DO UPDATE
SET ord = EXCLUDED.ord, capacity = EXCLUDED.capacity, price_cents = EXCLUDED.price_cents
"""

_STATE = """
INSERT INTO rm_events (event_id, state) VALUES ($1, $2)
ON CONFLICT (event_id) DO UPDATE SET state = EXCLUDED.state
"""

_TICKETS = """
INSERT INTO rm_tickets (event_id, code, section, price_cents)
SELECT $1, c, s, p FROM unnest($2::text[], $3::text[], $4::bigint[]) AS t(c, s, p)
ON CONFLICT DO NOTHING
"""

# The event whose next entry has waited longest first (then by id): behind-hand events are
# caught up in the order their entries were written, not the cursors' order on disk.
_CLAIM = """
SELECT c.event_id, c.applied_seq FROM read_model_cursors c
JOIN event_log_heads h USING (event_id)
LEFT JOIN event_log l ON l.event_id = c.event_id AND l.seq = c.applied_seq + 1
WHERE h.last_seq > c.applied_seq AND ($1::text IS NULL OR c.event_id = $1)
ORDER BY l.created_at NULLS LAST, c.event_id
LIMIT 1
FOR UPDATE OF c SKIP LOCKED
"""

_ENTRIES = """
SELECT l.event_id, l.seq, l.kind, l.version, l.created_at, l.actor::text, l.payload::text
FROM event_log l WHERE l.event_id = $1 AND l.seq > $2 ORDER BY l.seq LIMIT $3
"""

_LAG = """
SELECT coalesce(sum(h.last_seq - c.applied_seq), 0)::bigint AS entries,
       coalesce(extract(epoch FROM now() - min(l.created_at)), 0)::float8 AS seconds
FROM read_model_cursors c
JOIN event_log_heads h USING (event_id)
LEFT JOIN event_log l ON l.event_id = c.event_id AND l.seq = c.applied_seq + 1
WHERE h.last_seq > c.applied_seq
"""

_REPORT_SEQS = """
SELECT coalesce((SELECT applied_seq FROM read_model_cursors WHERE event_id = $1), 0) AS applied,
       coalesce((SELECT last_seq FROM event_log_heads WHERE event_id = $1), 0) AS head
"""


class ProjectionTx:
    """One event's cursor held in an open transaction: entries read after it, their counts
    applied and the cursor moved, all committed together when the block ends."""

    def __init__(self, conn: asyncpg.Connection, call: Call, event_id: str, seq: int) -> None:
        self._conn = conn
        self._call = call
        self.event_id = event_id
        #: The last entry applied (in this transaction so far).
        self.applied_seq = seq

    async def entries(self, limit: int) -> list[StoredEntry]:
        """The next ``limit`` entries after the cursor, in order."""

        async def fetch() -> Any:
            return await self._conn.fetch(_ENTRIES, self.event_id, self.applied_seq, limit)

        rows = await self._call("projection_entries", fetch)
        return [
            StoredEntry(
                r["seq"],
                r["kind"],
                r["created_at"],
                entry_json(
                    r["kind"],
                    r["version"],
                    r["event_id"],
                    r["seq"],
                    r["created_at"],
                    r["actor"],
                    r["payload"],
                ),
            )
            for r in rows
        ]

    async def ticket_sections(self, codes: Sequence[str]) -> dict[str, tuple[str, int]]:
        """The section and price of each sold ticket of ``codes`` the read models know."""
        if not codes:
            return {}

        async def fetch() -> Any:
            return await self._conn.fetch(
                "SELECT code, section, price_cents FROM rm_tickets "
                "WHERE event_id = $1 AND code = ANY($2::text[])",
                self.event_id,
                list(codes),
            )

        rows = await self._call("projection_tickets", fetch)
        return {r["code"]: (r["section"], r["price_cents"]) for r in rows}

    async def apply(self, delta: ProjectionDelta, upto_seq: int) -> None:
        """Add ``delta`` to the tables and move the cursor to ``upto_seq``."""
        event_id = self.event_id

        async def write() -> None:
            conn = self._conn
            if delta.created is not None:
                await conn.execute(_CREATED, event_id, *delta.created)
            if delta.sections_created:
                await conn.execute(
                    _SECTIONS_CREATED,
                    event_id,
                    [s for s, _, _ in delta.sections_created],
                    list(range(len(delta.sections_created))),
                    [c for _, c, _ in delta.sections_created],
                    [p for _, _, p in delta.sections_created],
                )
            if delta.state is not None:
                await conn.execute(_STATE, event_id, delta.state)
            if delta.tickets:
                await conn.execute(
                    _TICKETS,
                    event_id,
                    [c for c, _, _ in delta.tickets],
                    [s for _, s, _ in delta.tickets],
                    [p for _, _, p in delta.tickets],
                )
            if delta.totals:
                await conn.execute(
                    _ADD_TOTALS, [event_id], *([delta.totals.get(c, 0)] for c in EVENT_COUNTERS)
                )
            if delta.sections:
                names = list(delta.sections)
                await conn.execute(
                    _ADD_SECTIONS,
                    [event_id] * len(names),
                    names,
                    *([delta.sections[s].get(c, 0) for s in names] for c in SECTION_COUNTERS),
                )
            if delta.minutes:
                minutes = list(delta.minutes)
                await conn.execute(
                    _ADD_MINUTES,
                    [event_id] * len(minutes),
                    minutes,
                    *([delta.minutes[m].get(c, 0) for m in minutes] for c in MINUTE_COUNTERS),
                )
            await conn.execute(
                "UPDATE read_model_cursors SET applied_seq = $2, updated_at = now() "
                "WHERE event_id = $1",
                event_id,
                upto_seq,
            )

        await self._call("projection_apply", write)
        self.applied_seq = upto_seq


class ReadModelStore:
    """Typed access to the read models and their cursors."""

    def __init__(self, pool: asyncpg.Pool, call: Call) -> None:
        self._pool = pool  # asyncpg pool, used only on the drivers' loop
        self._call = call  # PgStore._call: counted, errors mapped to StorageError

    @asynccontextmanager
    async def claim(self, event_id: str | None = None) -> AsyncIterator[ProjectionTx | None]:
        """The cursor of an event (``event_id``, or any: the one whose next entry has waited
        longest) whose log is ahead of its read models, locked (skipping those another
        projector holds); None when there is none."""
        async with held_transaction(self._pool, self._call, "projection_claim") as conn:

            async def claim() -> Any:
                return await conn.fetchrow(_CLAIM, event_id)

            row = await self._call("projection_claim", claim)
            if row is None:
                yield None
                return
            yield ProjectionTx(conn, self._call, row["event_id"], row["applied_seq"])

    @asynccontextmanager
    async def rebuild(self, event_id: str) -> AsyncIterator[ProjectionTx]:
        """An event's read models emptied and its cursor at 0, in a transaction that holds
        the cursor (waiting for a projector applying it) until the block ends: what is
        applied in the block replaces them, all at once, when it commits."""
        async with held_transaction(self._pool, self._call, "projection_rebuild") as conn:

            async def reset() -> None:
                await conn.execute(
                    "INSERT INTO read_model_cursors (event_id) VALUES ($1) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    event_id,
                )
                await conn.execute(
                    "SELECT 1 FROM read_model_cursors WHERE event_id = $1 FOR UPDATE", event_id
                )
                for table in ("rm_events", "rm_sections", "rm_minutes", "rm_tickets"):
                    await conn.execute(f"DELETE FROM {table} WHERE event_id = $1", event_id)
                await conn.execute(
                    "UPDATE read_model_cursors SET applied_seq = 0, updated_at = now() "
                    "WHERE event_id = $1",
                    event_id,
                )

            await self._call("projection_rebuild", reset)
            yield ProjectionTx(conn, self._call, event_id, 0)

    async def log_length(self, event_id: str) -> int:
        """How many entries the event's log holds."""

        async def fetch() -> Any:
            return await self._pool.fetchval(
                "SELECT coalesce((SELECT last_seq FROM event_log_heads WHERE event_id = $1), 0)",
                event_id,
            )

        return int(await self._call("log_length", fetch))

    async def lag(self) -> tuple[int, float]:
        """Entries logged but not yet applied, over every event, and the age of the oldest
        of them, s (0, 0.0 when the read models are up to date)."""

        async def fetch() -> Any:
            return await self._pool.fetchrow(_LAG)

        row = await self._call("projection_lag", fetch)
        return int(row["entries"]), float(row["seconds"])

    async def report(self, event_id: str) -> ReportRows:
        """An event's read models as they stand, in one snapshot."""

        async def fetch() -> Any:
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                seqs = await conn.fetchrow(_REPORT_SEQS, event_id)
                totals = await conn.fetchrow(
                    f"SELECT name, currency, state, {', '.join(EVENT_COUNTERS)} "
                    "FROM rm_events WHERE event_id = $1",
                    event_id,
                )
                sections = await conn.fetch(
                    "SELECT section, capacity, price_cents, "
                    f"{', '.join(SECTION_COUNTERS)} FROM rm_sections "
                    "WHERE event_id = $1 ORDER BY ord, section",
                    event_id,
                )
                minutes = await conn.fetch(
                    f"SELECT minute, {', '.join(MINUTE_COUNTERS)} FROM rm_minutes "
                    "WHERE event_id = $1 ORDER BY minute",
                    event_id,
                )
                return seqs, totals, sections, minutes

        seqs, totals, sections, minutes = await self._call("report", fetch)
        return ReportRows(
            applied_seq=seqs["applied"],
            log_seq=seqs["head"],
            totals=None if totals is None else TotalsRow(**dict(totals)),
            sections=[SectionRow(**dict(r)) for r in sections],
            minutes=[MinuteRow(**dict(r)) for r in minutes],
        )
