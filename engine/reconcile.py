"""Reconciliation: PostgreSQL is the record, and Redis is made to agree with it.

A booking is durable before its seats are marked sold in Redis, so a crash
between the two, a commit that outlived its payment window, or a Redis restart
that lost its last writes can leave a booking whose seats Redis does not show
sold. Reconciliation reads the confirmed bookings and hands them to
``reconcile_bookings.lua``, which sells their seats when the ticket still holds
them or when they are still free, and reports a conflict otherwise; each conflict
is logged once in PostgreSQL's event_log as a refund to make. Cancelled tickets go
the other way: the seats of every done cancellation are handed to
``return_seats.lua`` first, which frees those Redis still shows sold to the
cancelled booking (a crash between the cancellation's commit and its seats'
return, or a Redis that lost its last writes), so a seat is free in Redis once its
ticket is no longer live. Running it again changes nothing, so every worker runs
it at start and then periodically.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from engine.cancellation import returned
from plumbing.clock import Clock
from storage.errors import StorageError
from storage.pg_records import BookingConflict, LiveBooking
from storage.pg_store import PgStore
from storage.redis_store import BookedSeats, RedisStore

__all__ = ["ReconcileReport", "reconcile", "run_reconciler"]

logger = logging.getLogger(__name__)

#: Bookings per script call: bounds the time one call keeps Redis busy.
BATCH = 500
#: Periodic passes leave bookings younger than this to their own checkout, seconds: it
#: confirms them in Redis milliseconds after the commit, seconds under load.
SETTLE_S = 5.0


@dataclass
class ReconcileReport:
    """What one reconciliation pass found, by result (confirmed, sold, retaken, conflict:*)."""

    results: Counter[str] = field(default_factory=Counter)
    #: Conflicts logged for the first time by this pass.
    new_conflicts: int = 0
    #: Done cancellations looked at, by result (returned, done, conflict:*).
    returns: Counter[str] = field(default_factory=Counter)

    @property
    def repaired(self) -> int:
        """Bookings whose seats this pass marked sold, or freed after a cancellation."""
        return self.results["sold"] + self.results["retaken"] + self.returns["returned"]

    @property
    def conflicts(self) -> int:
        """Bookings whose seats belong to another ticket in Redis."""
        return sum(n for r, n in self.results.items() if r.startswith("conflict"))

    def summary(self) -> str:
        """One line for logs and the command line."""
        parts = ", ".join(f"{r} {n}" for r, n in sorted(self.results.items()))
        line = f"bookings checked: {sum(self.results.values())} ({parts or 'none'})"
        if self.returns:
            back = ", ".join(f"{r} {n}" for r, n in sorted(self.returns.items()))
            line += f"; cancellations checked: {sum(self.returns.values())} ({back})"
        return line


def _booked(b: LiveBooking) -> BookedSeats:
    return BookedSeats(
        event_id=b.event_id,
        seq=b.ticket_seq,
        key=b.idempotency_key,
        booking_id=b.booking_id,
        section=b.section,
        positions=tuple(b.positions),
        client_id=b.client_id,
        amount_cents=b.amount_cents,
    )


async def reconcile(
    redis: RedisStore,
    pg: PgStore,
    clock: Clock,
    *,
    event_ids: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ReconcileReport:
    """Make Redis show every confirmed booking (created in [``since``, ``until``)) of these
    events sold.

    ``event_ids`` defaults to every event Redis knows. Raises StorageError when
    either store fails; a later pass picks up where this one stopped.
    """
    if event_ids is None:
        event_ids = await redis.event_ids()
    report = ReconcileReport()
    # Seats of cancelled tickets first: a seat cancelled and booked again is free for
    # the new booking to be sold.
    cancelled = await pg.returned_seats(event_ids, since=since, until=until)
    for start in range(0, len(cancelled), BATCH):
        chunk_back = cancelled[start : start + BATCH]
        back = await redis.return_seats([returned(r) for r in chunk_back], clock.now_ms())
        report.returns.update(back)
        for seats, result in zip(chunk_back, back, strict=True):
            if result == "returned":
                logger.warning("reconciled cancelled seats of booking %s", seats.booking_id)
            elif result.startswith("conflict"):
                logger.error(
                    "cancelled seats of booking %s: Redis disagrees (%s)", seats.booking_id, result
                )
    bookings = await pg.live_bookings(event_ids, since, until)
    for start in range(0, len(bookings), BATCH):
        chunk = bookings[start : start + BATCH]
        results = await redis.reconcile_bookings([_booked(b) for b in chunk], clock.now_ms())
        report.results.update(results)
        conflicts = [
            BookingConflict(b.event_id, b.booking_id, b.hold_id, r.removeprefix("conflict:"))
            for b, r in zip(chunk, results, strict=True)
            if r.startswith("conflict")
        ]
        for b, r in zip(chunk, results, strict=True):
            if r in ("sold", "retaken"):
                logger.warning("reconciled booking %s of hold %s: %s", b.booking_id, b.hold_id, r)
        if conflicts:
            report.new_conflicts += await pg.record_conflicts(conflicts)
            for c in conflicts:
                logger.error(
                    "booking %s of hold %s conflicts with Redis (%s): refund needed",
                    c.booking_id,
                    c.hold_id,
                    c.reason,
                )
    return report


async def run_reconciler(
    redis: RedisStore,
    pg: PgStore,
    clock: Clock,
    *,
    interval_s: float,
    window_s: float,
    settle_s: float = SETTLE_S,
    task_status: anyio.abc.TaskStatus[ReconcileReport | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Reconcile every booking once (reported through ``started``), then every ``interval_s``
    the bookings of the last ``window_s``.

    A booking is in PostgreSQL seconds before Redis shows it sold, so once the
    first pass is done only recent bookings can still need repair; the periodic
    passes cost what the recent sales cost, not what every past sale does. They
    leave bookings younger than ``settle_s`` to the checkout that is confirming
    them (the next pass takes them if it died). A pass that finds a store
    unreachable is retried at the next interval; the worker starts either way,
    since admission does not depend on it.
    """
    first: ReconcileReport | None = None
    try:
        first = await reconcile(redis, pg, clock)
        logger.info("reconciliation at start: %s", first.summary())
    except StorageError as exc:
        logger.warning("reconciliation at start skipped: %s", exc)
    task_status.started(first)
    whole_done = first is not None
    while True:
        await anyio.sleep(interval_s)
        now_s = clock.now_ms() / 1000
        since = None  # every booking, until one such pass has succeeded
        if whole_done:
            since = datetime.fromtimestamp(now_s - window_s, UTC)
        until = datetime.fromtimestamp(now_s - settle_s, UTC)
        try:
            report = await reconcile(redis, pg, clock, since=since, until=until)
        except StorageError as exc:  # unreachable or failing: the next pass tries again
            logger.warning("reconciliation skipped: %s", exc)
            continue
        whole_done = True
        if report.repaired or report.conflicts:
            logger.warning("reconciliation: %s", report.summary())
