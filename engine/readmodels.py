"""Read models projected from the event log: sales, revenue, refunds, cancellations,
check-ins and admissions, per event, per section and per minute.

The projector (:func:`run_projector`, in every worker; any number may run) is a
consumer of the log like the relay: it takes an event whose log is ahead of its
read models (the one whose next entry has waited longest), its cursor row locked (``FOR UPDATE SKIP LOCKED``: one projector per
event at a time), reads the entries after the cursor in ``seq`` order, adds what
they count to the tables and moves the cursor, in one transaction. A projector
killed halfway rolls back both, so no entry is counted twice or skipped.

The tables hold nothing the log does not: :func:`replay` (``booking replay``)
empties an event's read models and applies its whole log again in one
transaction, and what it builds is what the projector had built. A change to
what is counted is deployed by replaying.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import anyio
import anyio.abc
import msgspec

from engine.catalog import EventCatalog
from engine.metrics import (
    PROJECTED,
    PROJECTION_DELAY,
    PROJECTION_LAG_ENTRIES,
    PROJECTION_LAG_SECONDS,
)
from storage.errors import StorageError
from storage.log_events import (
    ENTRY_TYPES,
    AdmissionSummary,
    BookingCancelled,
    BookingConfirmed,
    EventCancelled,
    EventCancelRequested,
    EventCreated,
    LogEntry,
    RefundRefused,
    SaleClosed,
    SaleOpened,
    SalePaused,
    SaleResumed,
    SaleSoldOut,
    TicketCheckedIn,
    decode_entry,
)
from storage.pg_readmodels import ProjectionDelta, ProjectionTx, ReportRows, StoredEntry
from storage.pg_store import PgStore

__all__ = [
    "ProjectorPolicy",
    "ReportRows",
    "Reports",
    "apply_next",
    "project_once",
    "replay",
    "run_projector",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectorPolicy:
    """How the projector works."""

    #: Entries applied per transaction.
    batch_entries: int = 1000
    #: Wait between polls when every event was up to date, s.
    idle_s: float = 0.2
    #: How often the lag gauges are measured, s.
    lag_interval_s: float = 1.0


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _decode(entries: list[StoredEntry]) -> list[LogEntry]:
    """The entries of types this version knows (a newer writer's types wait for a replay by
    a projector that knows them)."""
    decoded: list[LogEntry] = []
    for e in entries:
        if e.kind not in ENTRY_TYPES:
            continue
        try:
            decoded.append(decode_entry(e.body))
        except msgspec.ValidationError as exc:
            logger.warning("projector: entry %s of type %s not read: %s", e.seq, e.kind, exc)
    return decoded


async def _delta(tx: ProjectionTx, entries: list[StoredEntry]) -> ProjectionDelta:
    """What ``entries`` (in order) add to the event's read models."""
    decoded = _decode(entries)
    # A ticket's section and price: sold in this run, or looked up among those sold before.
    sold: dict[str, tuple[str, int]] = {}
    wanted: set[str] = set()
    for entry in decoded:
        if isinstance(entry, BookingConfirmed):
            sold.update((t.code, (t.section, t.price_cents)) for t in entry.payload.tickets)
        elif isinstance(entry, BookingCancelled):
            wanted.update(c for c in entry.payload.codes if c not in sold)
        elif isinstance(entry, TicketCheckedIn) and entry.payload.code not in sold:
            wanted.add(entry.payload.code)
    known = await tx.ticket_sections(sorted(wanted))
    known.update(sold)

    delta = ProjectionDelta()
    for entry in decoded:
        minute = _minute(entry.at)
        match entry:
            case EventCreated():
                spec = entry.payload
                delta.created = (spec.name, spec.currency)
                delta.sections_created = [(s.id, s.capacity, s.price_cents) for s in spec.sections]
            case SaleOpened() | SalePaused() | SaleResumed() | SaleClosed() | SaleSoldOut():
                delta.state = entry.payload.state
            case EventCancelRequested():
                delta.state = "cancelling"
            case EventCancelled():
                delta.state = "cancelled"
            case AdmissionSummary():
                summary = entry.payload
                for name in ("joined", "admitted", "expired", "confirmed"):
                    delta.count(name, getattr(summary, name), _minute(summary.minute))
            case BookingConfirmed():
                booking = entry.payload
                delta.count("bookings", 1, minute)
                delta.count("tickets_sold", len(booking.tickets), minute)
                delta.count("revenue_cents", booking.amount_cents, minute)
                for t in booking.tickets:
                    delta.count_section(t.section, "tickets_sold", 1)
                    delta.count_section(t.section, "revenue_cents", t.price_cents)
                delta.tickets += [(t.code, t.section, t.price_cents) for t in booking.tickets]
            case BookingCancelled():
                cancel = entry.payload
                delta.count("cancellations", 1, minute)
                delta.count("tickets_cancelled", len(cancel.codes), minute)
                delta.count("refunded_cents", cancel.amount_cents, minute)
                if cancel.booking_status == "cancelled":
                    delta.count("bookings_cancelled", 1, minute)
                for code in cancel.codes:
                    if code in known:
                        section, price = known[code]
                        delta.count_section(section, "tickets_cancelled", 1)
                        delta.count_section(section, "refunded_cents", price)
            case RefundRefused():
                delta.count("refunds_refused", 1, minute)
            case TicketCheckedIn():
                scan = entry.payload
                delta.count("checked_in", 1, _minute(scan.checked_in_at))
                if scan.code in known:
                    delta.count_section(known[scan.code][0], "checked_in", 1)
            case _:
                pass
    return delta


async def apply_next(tx: ProjectionTx, limit: int) -> list[StoredEntry]:
    """Apply the next ``limit`` entries after the cursor ``tx`` holds (in its transaction);
    the entries applied (none: the read models are up to date)."""
    entries = await tx.entries(limit)
    if entries:
        await tx.apply(await _delta(tx, entries), entries[-1].seq)
    return entries


async def project_once(
    pg: PgStore, policy: ProjectorPolicy = ProjectorPolicy(), *, event_id: str | None = None
) -> int:
    """Apply the next entries of one event (``event_id``, or any) whose read models are
    behind its log; how many were applied (0: all up to date, or held by other projectors)."""
    async with pg.readmodels.claim(event_id) as tx:
        if tx is None:
            return 0
        entries = await apply_next(tx, policy.batch_entries)
    now = time.time()
    for e in entries:
        PROJECTION_DELAY.observe(max(0.0, now - e.at.timestamp()))
    PROJECTED.inc(len(entries))
    return len(entries)


async def run_projector(
    pg: PgStore,
    policy: ProjectorPolicy = ProjectorPolicy(),
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Keep every event's read models up to date with its log for as long as it runs, and
    its lag (entries, seconds) in the gauges."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_project_forever, pg, policy)
        tg.start_soon(_measure_lag, pg, policy)
        task_status.started()


async def _project_forever(pg: PgStore, policy: ProjectorPolicy) -> None:
    while True:
        try:
            applied = await project_once(pg, policy)
        except StorageError as exc:
            logger.warning("projector: %s", exc)
            applied = 0
        if applied == 0:
            await anyio.sleep(policy.idle_s)


async def _measure_lag(pg: PgStore, policy: ProjectorPolicy) -> None:
    while True:
        with contextlib.suppress(StorageError):
            entries, seconds = await pg.readmodels.lag()
            PROJECTION_LAG_ENTRIES.set(entries)
            PROJECTION_LAG_SECONDS.set(seconds)
        await anyio.sleep(policy.lag_interval_s)


async def replay(
    pg: PgStore,
    event_id: str,
    *,
    batch_entries: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rebuild an event's read models from its whole log, in one transaction (emptied,
    every entry applied, the cursor set at the last); how many entries were applied.
    ``progress(done, total)`` is called after each batch."""
    total = await pg.readmodels.log_length(event_id)
    done = 0
    async with pg.readmodels.rebuild(event_id) as tx:
        while entries := await apply_next(tx, batch_entries):
            done += len(entries)
            if progress is not None:
                progress(done, max(total, done))
    return done


class Reports:
    """An event's report, read from its read models."""

    def __init__(self, pg: PgStore, catalog: EventCatalog) -> None:
        self._pg = pg  # the read models
        self._catalog = catalog  # events exist

    async def report(self, event_id: str) -> ReportRows:
        """The event's totals, sections and minutes as projected so far; NotFound if there
        is no such event."""
        await self._catalog.get(event_id)
        return await self._pg.readmodels.report(event_id)
