"""Payments stopped halfway, driven to an end: the recovery loop every worker runs.

Each payment's steps are stored in PostgreSQL (``payment_sagas``): ``claimed`` before the
card is charged, ``recorded`` in the transaction that writes the booking, ``declined`` or
``voided`` when nothing was charged, ``compensating`` then ``refunded`` when a charge has no
booking. A payment whose process died, or whose gateway never said, stays ``claimed``;
once it is older than any payment request can live (``stale_s``: past its payment
window, so its hold is gone), recovery asks the gateway:

- a charge was made: a booking recorded for it after all ends the saga ``recorded``;
  otherwise it is refunded (``compensating`` first, so that a late commit writes nothing);
- no charge: the payment is voided at the gateway, so none is made later (``voided``).

``compensating`` payments (a booking PostgreSQL refused: its seats went to another) are
refunded at once. Every step is idempotent (the gateway's keys derive from the payment's),
so workers may run it concurrently and again after a crash.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import anyio

from engine.payments import GatewayUnavailable, PaymentGateway, RefundRefused
from plumbing.clock import Clock
from storage.errors import StorageError
from storage.pg_records import SagaRow
from storage.pg_store import PgStore

__all__ = ["recover_payments", "refund_key", "run_payment_recovery"]

logger = logging.getLogger(__name__)


def refund_key(idempotency_key: str) -> str:
    """The gateway's idempotency key of the refund of a payment's charge."""
    return f"{idempotency_key}/refund"


async def _recover(pg: PgStore, gateway: PaymentGateway, saga: SagaRow) -> str:
    key = saga.idempotency_key
    charge_ref = saga.gateway_ref
    if saga.step == "claimed":
        found = await gateway.retrieve(
            idempotency_key=key, amount_cents=saga.amount_cents, currency=saga.currency
        )
        if found is None:
            found = await gateway.void(
                idempotency_key=key, amount_cents=saga.amount_cents, currency=saga.currency
            )
        if found is None:
            moved = await pg.move_saga(key, "voided", from_steps=("claimed",))
            return "voided" if moved else "moved on"
        charge_ref = found.reference
        if await pg.booking_for_key(key) is not None:  # recorded after all
            return "recorded"
        if not await pg.move_saga(
            key, "compensating", from_steps=("claimed",), gateway_ref=charge_ref
        ):
            return "moved on"
    assert charge_ref, "a compensating payment names its charge"
    try:
        refund = await gateway.refund(
            charge_reference=charge_ref,
            amount_cents=saga.amount_cents,
            idempotency_key=refund_key(key),
        )
    except RefundRefused:
        logger.exception("the refund of payment %s was refused: left to an operator", key)
        return "refund refused"
    await pg.move_saga(key, "refunded", from_steps=("compensating",), refund_ref=refund.reference)
    logger.warning(
        "payment %s: charge %s had no booking and was refunded (%d cents)",
        key,
        charge_ref,
        saga.amount_cents,
    )
    return "refunded"


async def recover_payments(
    pg: PgStore, gateway: PaymentGateway, now: datetime, *, stale_s: float
) -> Counter[str]:
    """One pass: every payment stopped halfway driven to an end; what became of them."""
    results: Counter[str] = Counter()
    for saga in await pg.stalled_sagas(now - timedelta(seconds=stale_s)):
        try:
            results[await _recover(pg, gateway, saga)] += 1
        except GatewayUnavailable:
            logger.warning("payment %s: the gateway does not answer; tried again later", saga)
            results["unavailable"] += 1
    return results


async def run_payment_recovery(
    pg: PgStore,
    gateway: PaymentGateway,
    clock: Clock,
    *,
    interval_s: float,
    stale_s: float,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Recover stalled payments every ``interval_s`` until cancelled."""
    task_status.started()
    while True:
        try:
            now = datetime.fromtimestamp(clock.now_ms() / 1000, UTC)
            results = await recover_payments(pg, gateway, now, stale_s=stale_s)
            if results:
                logger.info("payment recovery: %s", dict(results))
        except StorageError:
            logger.warning("payment recovery: PostgreSQL unavailable; tried again later")
        await anyio.sleep(interval_s)
