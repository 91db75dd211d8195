"""Payments stopped halfway, driven to an end by recovery: against PostgreSQL and the sandbox
gateway process, through the Stripe adapter."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from engine.payments import ChargeStatus
from engine.saga import recover_payments
from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers
from storage.pg_records import SagaClaim
from storage.pg_store import PgStore, open_pg_store
from storage.stripe_gateway import StripeGateway
from tests.api.helpers import gateway_ledger

pytestmark = pytest.mark.anyio

LATER = timedelta(seconds=120)


@pytest.fixture
async def pg(servers: EmbeddedServers) -> AsyncIterator[PgStore]:
    assert servers.database_url is not None
    async with open_bridge() as bridge, open_pg_store(servers.database_url, bridge) as store:
        await store.migrate()
        yield store


@pytest.fixture
async def gateway(sandbox_gateway: str) -> AsyncIterator[StripeGateway]:
    adapter = StripeGateway("sk_test_saga", api_base=sandbox_gateway, sandbox=True)
    try:
        yield adapter
    finally:
        await adapter.aclose()


async def _claimed(pg: PgStore, amount: int = 4_000) -> SagaClaim:
    event = "t" + secrets.token_hex(6)
    claim = SagaClaim(f"{event}.1/{secrets.token_hex(6)}", event, f"{event}.1", amount, "EUR")
    await pg.claim_payments([claim])
    return claim


async def _log(pg: PgStore, event_id: str) -> list[str]:
    async def fetch() -> list[str]:
        rows = await pg._pool.fetch(
            "SELECT kind FROM event_log WHERE event_id = $1 ORDER BY id", event_id
        )
        return [r["kind"] for r in rows]

    return await pg._bridge.call(fetch)


async def test_a_charge_without_a_booking_is_refunded(
    pg: PgStore, gateway: StripeGateway, sandbox_gateway: str
) -> None:
    """Claimed, charged, and then nothing (the process died): once stale, recovery finds the
    charge and refunds it whole; each step is in event_log; a second pass does nothing."""
    claim = await _claimed(pg)
    charge = await gateway.charge(
        amount_cents=claim.amount_cents,
        currency="EUR",
        card_token="tok_visa",
        idempotency_key=claim.idempotency_key,
    )
    assert charge.status is ChargeStatus.SUCCEEDED
    before = await gateway_ledger(sandbox_gateway)
    now = datetime.now(UTC)
    assert (await recover_payments(pg, gateway, now, stale_s=60))["refunded"] == 0  # too fresh
    results = await recover_payments(pg, gateway, now + LATER, stale_s=60)
    assert results["refunded"] >= 1
    saga = await pg.saga(claim.idempotency_key)
    assert saga is not None and (saga.step, saga.gateway_ref) == ("refunded", charge.reference)
    after = await gateway_ledger(sandbox_gateway)
    assert after["refunded_cents"] - before["refunded_cents"] == claim.amount_cents
    assert await _log(pg, claim.event_id) == [
        "payment_claimed",
        "payment_compensating",
        "payment_refunded",
    ]
    await recover_payments(pg, gateway, now + LATER, stale_s=60)
    assert await gateway_ledger(sandbox_gateway) == after


async def test_a_payment_never_charged_is_voided(
    pg: PgStore, gateway: StripeGateway, sandbox_gateway: str
) -> None:
    """Claimed, and the gateway never charged (it timed out, or was never reached): recovery
    voids it, and nothing can be charged under its key afterwards."""
    claim = await _claimed(pg)
    before = await gateway_ledger(sandbox_gateway)
    await recover_payments(pg, gateway, datetime.now(UTC) + LATER, stale_s=60)
    saga = await pg.saga(claim.idempotency_key)
    assert saga is not None and saga.step == "voided"
    late = await gateway.charge(
        amount_cents=claim.amount_cents,
        currency="EUR",
        card_token="tok_visa",
        idempotency_key=claim.idempotency_key,
    )
    assert late.status is ChargeStatus.DECLINED
    assert await gateway_ledger(sandbox_gateway) == before


async def test_a_compensating_payment_is_refunded_at_once(
    pg: PgStore, gateway: StripeGateway, sandbox_gateway: str
) -> None:
    """A booking PostgreSQL refused (its seats went to another) leaves the payment
    compensating: the next pass refunds it without waiting."""
    claim = await _claimed(pg, 2_500)
    charge = await gateway.charge(
        amount_cents=claim.amount_cents,
        currency="EUR",
        card_token="tok_mastercard",
        idempotency_key=claim.idempotency_key,
    )
    moved = await pg.move_saga(
        claim.idempotency_key,
        "compensating",
        from_steps=("claimed",),
        gateway_ref=charge.reference,
    )
    assert moved
    before = await gateway_ledger(sandbox_gateway)
    await recover_payments(pg, gateway, datetime.now(UTC), stale_s=60)
    saga = await pg.saga(claim.idempotency_key)
    assert saga is not None and saga.step == "refunded"
    after = await gateway_ledger(sandbox_gateway)
    assert after["refunded_cents"] - before["refunded_cents"] == 2_500
