"""Cancelling bookings: the record first, then the refund, then the seats back on sale.

A cancellation (the whole booking or some of its tickets, by its buyer or an admin)
is recorded in PostgreSQL as pending before any money moves. The refund is asked of
the gateway under a key derived from the cancellation, so asking again never refunds
twice. Once refunded, one transaction takes the tickets out of the booking (``live``
false, the booking ``cancelled`` when none is left), marks the cancellation done and
logs it; then ``return_seats.lua`` frees the seats in Redis, where the next in line
gets them (a sold-out event opens again). Whatever fails, nothing is half-done: a
pending cancellation is driven to its end by the worker (:func:`run_cancellations`,
retrying the refund with backoff while the gateway is unreachable), and seats Redis
still shows sold for a done cancellation are freed by reconciliation.

An admin may cancel a whole event: the sale is closed and the workers cancel and
refund every live booking, one cancellation each under the event's key, so a
worker that dies leaves nothing another cannot pick up; the progress (refunded n
of m) is read from those cancellations.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from enum import StrEnum

import anyio
import msgspec

from engine.bookings import Booking, Bookings
from engine.catalog import EventCatalog
from engine.errors import (
    AlreadyCancelled,
    CancellationInProgress,
    KeyReused,
    NotFound,
    RefundNotAllowed,
    RefundRefused,
    TicketCheckedIn,
    TicketNotInBooking,
    Unprocessable,
)
from engine.metrics import CANCELLATIONS, REFUNDED
from engine.payments import GatewayUnavailable, PaymentGateway
from engine.payments import RefundRefused as GatewayRefused
from plumbing.clock import Clock
from storage.errors import StorageError
from storage.log_events import Actor
from storage.pg_records import (
    CancellationRow,
    EventCancellationRow,
    NewCancellation,
    ReturnedSeatRow,
)
from storage.pg_store import PgStore
from storage.redis_store import RedisStore, ReturnedSeats

__all__ = [
    "Cancellation",
    "CancellationStatus",
    "Cancellations",
    "EventCancellation",
    "conflict_key",
    "refund_key",
    "returned",
    "run_cancellations",
]

logger = logging.getLogger(__name__)

#: Most ticket codes one cancellation may name.
MAX_CODES = 100


#: Why a booking the engine cancels of its own accord (a conflict, an event's cancellation)
#: is left as it is for now: logged or counted, never raised.
_NOT_CANCELLABLE_NOW = (AlreadyCancelled, CancellationInProgress, RefundRefused, TicketCheckedIn)


class CancellationStatus(StrEnum):
    """Where a cancellation stands."""

    PENDING = "pending"  # recorded; the refund is not done yet (the worker retries it)
    REFUNDED = "refunded"  # refunded, tickets cancelled, seats back on sale
    REFUSED = "refused"  # the gateway refused the refund for good; tickets stay live


_STATUS = {
    "pending": CancellationStatus.PENDING,
    "done": CancellationStatus.REFUNDED,
    "refused": CancellationStatus.REFUSED,
}


class Cancellation(msgspec.Struct, frozen=True):
    """A cancellation: which tickets, how much is refunded, and where it stands.

    Once refunded or refused nothing of it changes again, so a replay answers it alike.
    """

    id: str
    booking_id: str
    status: CancellationStatus
    tickets: list[str]
    amount_cents: int
    #: The gateway's reference of the refund, once made.
    refund_reference: str | None
    #: The booking's status once this cancellation was done (None while pending).
    booking_status: str | None
    requested_at: datetime
    completed_at: datetime | None


def cancellation_from_row(row: CancellationRow) -> Cancellation:
    """The cancellation of a stored row."""
    return Cancellation(
        id=row.id,
        booking_id=row.booking_id,
        status=_STATUS[row.status],
        tickets=list(row.codes),
        amount_cents=row.amount_cents,
        refund_reference=row.refund_ref,
        booking_status=row.booking_status,
        requested_at=row.created_at,
        completed_at=row.done_at,
    )


class EventCancellation(msgspec.Struct, frozen=True):
    """A whole event being cancelled: ``status`` running or done, and its bookings by where
    they stand (``bookings`` in all: refunded + pending + refused + not yet reached)."""

    event_id: str
    status: str
    bookings: int
    refunded: int
    pending: int
    refused: int
    refunded_cents: int
    requested_at: datetime
    completed_at: datetime | None


def event_cancellation_from_row(row: EventCancellationRow) -> EventCancellation:
    """The progress of a stored event cancellation."""
    return EventCancellation(
        event_id=row.event_id,
        status=row.status,
        bookings=row.refunded + row.pending + row.refused + row.live,
        refunded=row.refunded,
        pending=row.pending,
        refused=row.refused,
        refunded_cents=row.refunded_cents,
        requested_at=row.requested_at,
        completed_at=row.done_at,
    )


def event_key(event_id: str) -> str:
    """The idempotency key of the cancellations an event's cancellation makes."""
    return f"event/{event_id}"


def conflict_key(booking_id: str) -> str:
    """The idempotency key of the cancellation that refunds a booking reconciliation found
    in conflict: one per booking, whichever worker or pass asks."""
    return f"reconcile/{booking_id}"


def refund_key(cancellation_id: str) -> str:
    """The gateway idempotency key of a cancellation's refund: one refund per cancellation."""
    return f"refund/{cancellation_id}"


def returned(row: ReturnedSeatRow) -> ReturnedSeats:
    """The seats of a done cancellation, as Redis frees them."""
    return ReturnedSeats(
        row.event_id, row.ticket_seq, row.booking_id, row.section, tuple(row.positions)
    )


_REFUSALS = {
    "cancelled": (AlreadyCancelled, "this booking has no live ticket left to cancel"),
    "not_in_booking": (TicketNotInBooking, "ticket {} is not one of this booking's"),
    "not_live": (AlreadyCancelled, "ticket {} was cancelled already"),
    "pending": (CancellationInProgress, "ticket {} is being cancelled by another request"),
    "checked_in": (TicketCheckedIn, "ticket {} was used at the door; it cannot be cancelled"),
}


class Cancellations:
    """Cancels bookings and refunds them, and drives pending cancellations to their end."""

    def __init__(
        self,
        redis: RedisStore,
        pg: PgStore,
        catalog: EventCatalog,
        bookings: Bookings,
        gateway: PaymentGateway,
        clock: Clock,
        *,
        gateway_timeout_s: float,
        retry_max_s: float = 60.0,
    ) -> None:
        self._redis = redis  # seats back on sale
        self._pg = pg  # the record
        self._bookings = bookings  # the bookings an event's cancellation cancels
        self._catalog = catalog  # refund policies
        self._gateway = gateway  # refunds
        self._clock = clock  # the refund deadline
        self._gateway_timeout_s = gateway_timeout_s  # how long a refund may take
        self._retry_max_s = retry_max_s  # longest wait between refund attempts

    async def cancel(
        self,
        booking: Booking,
        idempotency_key: str,
        codes: list[str] | None,
        *,
        by_admin: bool,
        actor: Actor | None = None,
    ) -> Cancellation:
        """Cancel ``codes`` of ``booking`` (None: every live ticket not checked in) and refund
        their prices.

        A buyer (``by_admin`` False) is held to the event's refund policy. The same key
        again answers the same cancellation (driving it on if still pending); with other
        tickets it is refused. Raises Unprocessable, KeyReused, RefundNotAllowed,
        AlreadyCancelled, TicketNotInBooking, TicketCheckedIn, CancellationInProgress,
        RefundRefused.
        """
        if codes is not None:
            if not codes:
                raise Unprocessable("tickets, when given, must name at least one ticket code")
            if len(set(codes)) != len(codes):
                raise Unprocessable("tickets must not name a ticket twice")
            if len(codes) > MAX_CODES:
                raise Unprocessable(f"at most {MAX_CODES} tickets per cancellation")
            codes = sorted(codes)
        new = NewCancellation(
            id="cx" + secrets.token_hex(8),
            booking_id=booking.id,
            idempotency_key=idempotency_key,
            codes=codes,
            by_admin=by_admin,
            actor=actor,
        )
        existing = await self._pg.cancellation_for_key(booking.id, idempotency_key)
        if existing is None and not by_admin:
            spec = await self._catalog.get(booking.event_id)
            now = datetime.fromtimestamp(self._clock.now_ms() / 1000, UTC)
            if not spec.buyer_may_cancel(now):
                raise RefundNotAllowed(
                    "this event's refund policy does not let buyers cancel"
                    + ("" if not spec.buyer_refunds else " any more")
                )
        row = existing or await self._begin(new)
        if (row.whole, None if row.whole else row.codes) != (codes is None, codes):
            raise KeyReused("this Idempotency-Key was used to cancel other tickets")
        row = await self.drive(row)
        if row.status == "refused":
            raise RefundRefused("the payment provider refused the refund; the tickets stay valid")
        return cancellation_from_row(row)

    async def _begin(self, new: NewCancellation) -> CancellationRow:
        result = await self._pg.begin_cancellation(new)
        if isinstance(result, CancellationRow):
            return result
        reason, _, code = result.partition(":")
        if reason == "missing":
            raise NotFound(f"no booking {new.booking_id!r}")
        kind, message = _REFUSALS[reason]
        raise kind(message.format(code))

    async def drive(self, row: CancellationRow) -> CancellationRow:
        """Take a cancellation as far as it goes now: refund, then the record, then the seats.

        A refund the gateway could not make (unreachable, no answer in time) leaves it
        pending, to be tried again after a backoff; a refund refused for good ends it
        refused. StorageError when PostgreSQL fails (the cancellation stays pending).
        """
        if row.status == "pending":
            reference = ""
            if row.amount_cents > 0:
                try:
                    with anyio.fail_after(self._gateway_timeout_s):
                        refund = await self._gateway.refund(
                            charge_reference=row.charge_ref,
                            amount_cents=row.amount_cents,
                            idempotency_key=refund_key(row.id),
                        )
                except (GatewayUnavailable, TimeoutError) as exc:
                    wait = min(self._retry_max_s, 0.5 * 2 ** min(row.attempts, 16))
                    logger.warning(
                        "refund of cancellation %s failed (%s); next attempt in %.1f s",
                        row.id,
                        exc or "no answer in time",
                        wait,
                    )
                    await self._pg.postpone_cancellation(
                        row.id, str(exc) or "no answer in time", wait
                    )
                    CANCELLATIONS.labels("retry").inc()
                    return row
                except GatewayRefused as exc:
                    logger.error("refund of cancellation %s refused: %s", row.id, exc)  # noqa: TRY400 (no traceback: a refusal, not a fault)
                    CANCELLATIONS.labels("refused").inc()
                    return await self._pg.refuse_cancellation(row.id, str(exc))
                reference = refund.reference
            row, seats = await self._pg.finish_cancellation(row.id, reference)
            if seats:  # this call finished it (another may have, meanwhile)
                logger.info("cancellation %s of booking %s done", row.id, row.booking_id)
                CANCELLATIONS.labels("refunded").inc()
                REFUNDED.labels(row.event_id).inc(row.amount_cents)
            await self._return_seats(row.id, seats)
        elif row.status == "done":  # a replay: the seats again, in case Redis missed them
            try:
                seats = await self._pg.returned_seats(cancellation_ids=[row.id])
            except StorageError:
                seats = []  # reconciliation sees to them
            await self._return_seats(row.id, seats)
        return row

    async def _return_seats(self, cancellation_id: str, seats: list[ReturnedSeatRow]) -> None:
        """Free the cancelled seats in Redis; on failure reconciliation does it later."""
        try:
            if seats:
                await self._redis.return_seats([returned(s) for s in seats], self._clock.now_ms())
        except StorageError as exc:
            logger.warning(
                "seats of cancellation %s not yet back on sale (%s); reconciliation will",
                cancellation_id,
                exc,
            )

    async def refund_conflict(self, booking_id: str) -> Cancellation | None:
        """Cancel and refund a paid booking that cannot stand: reconciliation found its seats
        sold or held for another ticket in Redis. The whole booking, as an admin's
        cancellation (no refund policy applies: the sale could not keep its seats), under
        :func:`conflict_key`, so every pass and every worker drives the same one; its seats
        stay with the other ticket (``return_seats.lua`` finds them not this booking's). A
        refund the gateway could not make yet stays pending for :func:`run_cancellations`.
        None when it cannot be cancelled now (logged; the next pass asks again).
        """
        booking = await self._bookings.get(booking_id)
        try:
            return await self.cancel(booking, conflict_key(booking_id), None, by_admin=True)
        except _NOT_CANCELLABLE_NOW as exc:
            logger.warning("booking %s in conflict not refunded now: %s", booking_id, exc)
            return None

    # -- a whole event --------------------------------------------------------------------

    async def cancel_event(self, event_id: str, actor: Actor | None = None) -> EventCancellation:
        """Cancel a whole event (an admin's decision): recorded, the sale closed; the
        workers then cancel and refund every live booking. Asking again changes nothing."""
        await self._catalog.get(event_id)  # NotFound
        if await self._pg.begin_event_cancellation(event_id, actor):
            logger.info("event %s is being cancelled", event_id)
        await self._redis.set_event_state(event_id, "close", self._clock.now_ms())
        return await self.event_progress(event_id)

    async def event_progress(self, event_id: str) -> EventCancellation:
        """How far an event's cancellation got; NotFound if it is not being cancelled."""
        await self._catalog.get(event_id)  # NotFound, and an id fit to be looked up
        row = await self._pg.event_cancellation(event_id, event_key(event_id))
        if row is None:
            raise NotFound(f"event {event_id!r} is not being cancelled")
        return event_cancellation_from_row(row)

    async def drive_event(self, event_id: str, batch: int = 100) -> bool:
        """Cancel every live booking of an event being cancelled; whether it is done.

        Each booking gets one cancellation under the event's key (a replay after a crash
        finds it); a refund the gateway could not make stays pending for
        :meth:`drive`. Done once no booking is left live, no cancellation pending and no
        hold open (a payment begun before the close may still land).
        """
        key = event_key(event_id)
        await self._redis.set_event_state(event_id, "close", self._clock.now_ms())
        skipped: list[str] = []  # refused for now (a buyer's own cancellation under way)
        while ids := await self._pg.uncancelled_booking_ids(event_id, key, batch, skipped):
            for booking_id in ids:
                booking = await self._bookings.get(booking_id)
                try:
                    await self.cancel(booking, key, None, by_admin=True)
                except _NOT_CANCELLABLE_NOW as exc:
                    skipped.append(booking_id)
                    logger.warning(
                        "event %s: booking %s not cancelled now: %s", event_id, booking_id, exc
                    )
            if len(ids) < batch:
                break
        if skipped:
            return False  # the next pass tries them again
        status = await self._redis.status(event_id)
        if status is not None and status.seats.held > 0:
            return False
        if await self._pg.finish_event_cancellation(event_id, key):
            logger.info("event %s cancelled: every booking refunded", event_id)
            return True
        return False


async def run_cancellations(
    cancellations: Cancellations,
    pg: PgStore,
    *,
    interval_s: float = 1.0,
    batch: int = 50,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Drive pending cancellations whose next attempt is due to their end, and the events
    being cancelled as a whole, every ``interval_s``.

    A cancellation stays pending when its request died (a crash, PostgreSQL away after
    the refund) or the gateway could not refund it; each attempt that fails puts the
    next one further off (backoff, kept in PostgreSQL, so every worker agrees). Any
    number of workers may run this at once: the refund is idempotent per cancellation
    and finishing one twice changes nothing.
    """
    task_status.started()
    while True:
        try:
            for row in await pg.due_cancellations(batch):
                await cancellations.drive(row)
            for event_id in await pg.running_event_cancellations():
                await cancellations.drive_event(event_id)
        except StorageError as exc:
            logger.warning("pending cancellations: a store failed (%s); retrying", exc)
        await anyio.sleep(interval_s)
