"""Paying for a hold: claim it, charge the card, record the booking, mark seats sold.

Order matters: the booking is durable in PostgreSQL before the payment call
answers and before Redis marks the seats sold, so a crash at any point leaves
either no booking (the hold is released when its window ends) or a durable
booking that reconciliation finishes in Redis. Every storage step is batched
across concurrent payments.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import anyio

from engine.bookings import Booking, Bookings, BookingStatus, ticket_from_row
from engine.catalog import EventCatalog
from engine.errors import (
    AlreadyPaid,
    Conflict,
    HoldExpired,
    NotFound,
    PaymentDeclined,
    PaymentInProgress,
    PaymentTimeout,
    Unavailable,
)
from engine.events import seat_label
from engine.holds import hold_id
from engine.metrics import BOOKINGS, PAYMENT_LATENCY, PAYMENTS, REVENUE
from engine.payments import Charge, ChargeStatus, GatewayUnavailable, PaymentGateway
from engine.ticket_codes import TicketCodes
from plumbing import log_context, tracing
from plumbing.batcher import Batcher
from plumbing.clock import Clock
from storage.errors import StorageError, StorageUnavailable
from storage.pg_records import CommitResult, NewBooking, SagaClaim, TicketRow
from storage.pg_store import PgStore
from storage.records import BeginPaymentResult, BeginResult
from storage.redis_store import HoldRef, PaidHold, RedisStore

__all__ = ["Checkout", "PaymentRequest"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A holder's request to pay for its hold."""

    event_id: str
    seq: int
    idempotency_key: str
    card_token: str
    #: Where the confirmation mail goes (None: no mail).
    email: str | None = None

    @property
    def hold_id(self) -> str:
        """The public name of the hold."""
        return hold_id(self.event_id, self.seq)

    @property
    def scoped_key(self) -> str:
        """The idempotency key within its hold: the same key on another hold is another payment."""
        return f"{self.hold_id}/{self.idempotency_key}"


def _seat_order(ticket: TicketRow) -> tuple[str, int]:
    """Tickets in the order a read of the booking lists them."""
    return ticket.section, ticket.position


class Checkout:
    """Runs payments; each storage step is one batch across concurrent payments."""

    def __init__(
        self,
        redis: RedisStore,
        pg: PgStore,
        catalog: EventCatalog,
        bookings: Bookings,
        gateway: PaymentGateway,
        clock: Clock,
        codes: TicketCodes,
        *,
        payment_window_s: float,
        gateway_timeout_s: float,
        booking_token_ttl_s: int,
    ) -> None:
        if gateway_timeout_s >= payment_window_s:
            raise ValueError("the gateway timeout must end well inside the payment window")
        self._redis = redis  # holds
        self._pg = pg  # the record
        self._catalog = catalog  # seat labels
        self._bookings = bookings  # bookings already made (replayed payments)
        self._gateway = gateway  # charges cards
        self._clock = clock  # hold deadlines
        self._window_ms = int(payment_window_s * 1000)  # how long a started payment keeps its hold
        self._gateway_timeout_s = gateway_timeout_s  # how long the gateway may take
        self._codes = codes  # signs ticket codes
        self._booking_token_ttl_s = booking_token_ttl_s  # how long a booking token reads it
        self.begin: Batcher[HoldRef, BeginPaymentResult] = Batcher(
            self._begin_batch, name="begin_payment"
        )
        self.claim: Batcher[SagaClaim, None] = Batcher(pg.claim_payments, name="claim_payments")
        self.commit: Batcher[NewBooking, CommitResult] = Batcher(
            pg.commit_bookings, name="commit_bookings"
        )
        self.confirm: Batcher[PaidHold, str] = Batcher(self._confirm_batch, name="confirm_paid")

    async def _begin_batch(self, holds: list[HoldRef]) -> list[BeginPaymentResult]:
        return await self._redis.begin_payments(holds, self._clock.now_ms(), self._window_ms)

    async def _confirm_batch(self, paid: list[PaidHold]) -> list[str]:
        return await self._redis.confirm_paid(paid, self._clock.now_ms())

    async def release(self, event_id: str, seq: int) -> None:
        """Give a hold back before its deadline (its holder changed their mind): the seats go
        to the next in line. PaymentInProgress while a payment runs; HoldExpired when no hold
        is open (it ran out, was paid, or was released already)."""
        result = await self._redis.release_hold(event_id, seq, self._clock.now_ms())
        if result == "paying":
            raise PaymentInProgress("a payment for this hold is running; it cannot be released")
        if result != "released":
            raise HoldExpired("this hold is no longer open: it ran out, was paid or was released")

    async def pay(self, req: PaymentRequest) -> Booking:
        """Pay for a hold; the booking is durable when this returns."""
        started = time.perf_counter()
        with log_context.bound(event=req.event_id, ticket=req.seq, hold=req.hold_id):
            try:
                booking = await self._pay(req)
            except Exception as exc:
                PAYMENTS.labels(getattr(exc, "code", "error")).inc()
                raise
            finally:
                PAYMENT_LATENCY.observe(time.perf_counter() - started)
            PAYMENTS.labels("confirmed").inc()
            logger.debug("booking %s confirmed", booking.id, extra={"booking": booking.id})
        return booking

    async def _pay(self, req: PaymentRequest) -> Booking:
        key = req.scoped_key
        ref = HoldRef(req.event_id, req.seq, key)
        with tracing.step("claim"):
            claim = await self.begin.submit(ref)
        if claim.result == BeginResult.PAID:
            if claim.idempotency_key == key and claim.booking_id:
                return await self._bookings.get(claim.booking_id)
            raise AlreadyPaid("this hold was already paid", claim.booking_id)
        if claim.result == BeginResult.IN_PROGRESS:
            # A crash after the commit leaves the hold "paying": the record decides.
            if claim.idempotency_key == key:
                recorded = await self._pg.booking_for_key(key)
                if recorded is not None:
                    await self.confirm.submit(PaidHold(req.event_id, req.seq, key, recorded))
                    return await self._bookings.get(recorded)
            raise PaymentInProgress("a payment for this hold is already running")
        if claim.result == BeginResult.EXPIRED:
            raise HoldExpired("the hold expired; its seats went back on sale")
        if claim.result != BeginResult.OK:
            raise NotFound("no such hold")

        spec = await self._catalog.get(req.event_id)
        try:  # the saga starts before any money moves: a crash from here on is recovered
            await self.claim.submit(
                SagaClaim(key, req.event_id, req.hold_id, claim.amount_cents, spec.currency)
            )
        except StorageUnavailable:
            await self._redis.abort_payments([ref], self._clock.now_ms())
            raise Unavailable("the payment could not be started; nothing was charged") from None
        charge = await self._charge(req, ref, claim, spec.currency)
        try:
            return await self._record(req, ref, claim, charge.reference)
        except StorageUnavailable:
            # Whether the commit landed is unknown. Make the hold payable again so a
            # retry with the same key goes through (the charge and the payment row
            # are idempotent per key); a booking that did land is sold by
            # reconciliation even if the client never retries.
            try:
                await self._redis.abort_payments([ref], self._clock.now_ms())
            except StorageError:
                logger.warning("hold %s stays paying until its window ends", req.hold_id)
            raise Unavailable(
                "the booking could not be recorded; retry with the same Idempotency-Key",
                retry_after_s=2,
            ) from None

    async def _charge(
        self, req: PaymentRequest, ref: HoldRef, claim: BeginPaymentResult, currency: str
    ) -> Charge:
        """The card charged; otherwise the hold made payable again and the refusal raised.

        An unknown outcome (the gateway timed out or failed on its side) is asked about:
        a charge that was made after all is kept and booked; otherwise the payment is voided,
        so that nothing is charged under the key later, before the client is told so.
        """
        key = ref.key
        try:
            with tracing.step("charge"), anyio.fail_after(self._gateway_timeout_s):
                charge = await self._gateway.charge(
                    amount_cents=claim.amount_cents,
                    currency=currency,
                    card_token=req.card_token,
                    idempotency_key=key,
                )
        except (TimeoutError, GatewayUnavailable) as exc:
            found = await self._resolve(key, claim.amount_cents, currency)
            if found is None:
                await self._end_saga(key, "voided")
                await self._redis.abort_payments([ref], self._clock.now_ms())
                if isinstance(exc, TimeoutError):
                    raise PaymentTimeout(
                        "the payment provider did not answer; nothing was charged: pay again "
                        "with a new Idempotency-Key"
                    ) from None
                raise Unavailable(
                    "the payment provider failed; nothing was charged: pay again with a new "
                    "Idempotency-Key",
                    retry_after_s=2,
                ) from None
            logger.info("hold %s: the charge was made after all (%s)", req.hold_id, exc)
            charge = found
        if charge.status is ChargeStatus.DECLINED:
            await self._end_saga(key, "declined")
            await self._redis.abort_payments([ref], self._clock.now_ms())
            raise PaymentDeclined("the card was declined; the hold stays yours until it expires")
        return charge

    async def _end_saga(self, key: str, step: str, gateway_ref: str | None = None) -> None:
        """Move a claimed payment's saga on; left to recovery if PostgreSQL cannot be told."""
        try:
            await self._pg.move_saga(key, step, from_steps=("claimed",), gateway_ref=gateway_ref)
        except StorageError:
            logger.warning("payment %s stays claimed in PostgreSQL: recovery ends it", key)

    async def _resolve(self, key: str, amount_cents: int, currency: str) -> Charge | None:
        """After an unknown outcome: the charge made under ``key``, or None once it is sure
        that none will be (voided). Unavailable if the gateway cannot say."""
        try:
            with tracing.step("resolve"), anyio.fail_after(self._gateway_timeout_s):
                found = await self._gateway.retrieve(
                    idempotency_key=key, amount_cents=amount_cents, currency=currency
                )
                if found is None:
                    found = await self._gateway.void(
                        idempotency_key=key, amount_cents=amount_cents, currency=currency
                    )
        except (TimeoutError, GatewayUnavailable):
            logger.exception("payment %s: whether the card was charged is unknown", key)
            raise Unavailable(
                "the payment provider does not answer; whether the card was charged is not "
                "known yet",
                retry_after_s=5,
            ) from None
        return found

    async def _record(
        self, req: PaymentRequest, ref: HoldRef, claim: BeginPaymentResult, gateway_ref: str
    ) -> Booking:
        """Write the booking of a charged hold, then mark its seats sold."""
        key = ref.key
        spec = await self._catalog.get(req.event_id)
        section = spec.section(claim.section)
        assert section is not None, "a hold names a section of its event"
        booking_id = "bk" + secrets.token_hex(8)
        tickets = []
        for position in claim.seats:
            label = seat_label(section, position)
            code = self._codes.issue(req.event_id, booking_id, claim.section, position)
            tickets.append(TicketRow(code, claim.section, position, label.row, label.number))
        new = NewBooking(
            booking_id=booking_id,
            event_id=req.event_id,
            hold_id=req.hold_id,
            ticket_seq=req.seq,
            client_id=claim.client_id,
            amount_cents=claim.amount_cents,
            idempotency_key=key,
            gateway_ref=gateway_ref,
            tickets=tickets,
            token_expires_s=self._clock.now_ms() // 1000 + self._booking_token_ttl_s,
            email=req.email,
        )
        with tracing.step("committed"):
            result = await self.commit.submit(new)
        if result.error is not None or result.booking_id is None:
            logger.error("booking for hold %s refused by PostgreSQL: %s", req.hold_id, result.error)
            await self._end_saga(key, "compensating", gateway_ref)  # the workers refund it
            raise Conflict("these seats cannot be booked; the charge will be refunded")
        try:
            with tracing.step("confirm"):
                paid = PaidHold(
                    req.event_id, req.seq, key, result.booking_id, tracing.current_traceparent()
                )
                await self.confirm.submit(paid)
        except StorageError:
            # Durable already; reconciliation marks the seats sold in Redis.
            logger.exception(
                "booking %s recorded but not yet confirmed in Redis", result.booking_id
            )
        if result.replayed or result.created_at is None:
            return await self._bookings.get(result.booking_id)
        BOOKINGS.labels(req.event_id).inc()
        REVENUE.labels(req.event_id).inc(new.amount_cents)
        # PostgreSQL's time of the record, as a later read (or a replay) tells it.
        return Booking(
            id=new.booking_id,
            event_id=new.event_id,
            hold_id=new.hold_id,
            status=BookingStatus.CONFIRMED,
            amount_cents=new.amount_cents,
            created_at=result.created_at,
            tickets=[ticket_from_row(t) for t in sorted(tickets, key=_seat_order)],
            token_expires_s=new.token_expires_s,
        )
