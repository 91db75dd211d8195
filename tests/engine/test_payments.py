"""SandboxGateway: outcomes per card token, timeouts in virtual time, idempotency."""

from __future__ import annotations

import anyio
import pytest
import trio
import trio.testing

from engine.payments import (
    SANDBOX_CARDS,
    Charge,
    ChargeStatus,
    GatewayUnavailable,
    RefundRefused,
    SandboxGateway,
)

pytestmark = [pytest.mark.anyio, pytest.mark.once, pytest.mark.mock_clock(autojump_threshold=0)]


@pytest.mark.parametrize("card", ["tok_visa", "tok_mastercard"])
async def test_good_cards_succeed(card: str) -> None:
    """The sandbox's good test cards are charged successfully."""
    gateway = SandboxGateway()
    charge = await gateway.charge(amount_cents=1_500, card_token=card, idempotency_key="k1")
    assert charge.status is ChargeStatus.SUCCEEDED
    assert charge.reference.startswith("sbx_")
    assert gateway.charges() == 1


@pytest.mark.parametrize("card", ["tok_declined", "tok_unknown", "", "TOK_VISA", "tok_visa "])
async def test_declined_and_unknown_cards_are_declined(card: str) -> None:
    """tok_declined and any token the sandbox does not know are declined, and not counted."""
    gateway = SandboxGateway()
    charge = await gateway.charge(amount_cents=1_500, card_token=card, idempotency_key="k1")
    assert charge.status is ChargeStatus.DECLINED
    assert gateway.charges() == 0


async def test_timeout_card_never_answers() -> None:
    """tok_timeout blocks until the caller's deadline cancels it; nothing is charged."""
    gateway = SandboxGateway()
    started = anyio.current_time()
    with anyio.move_on_after(3_600) as scope:
        await gateway.charge(amount_cents=1_500, card_token="tok_timeout", idempotency_key="k1")
        pytest.fail("tok_timeout returned")
    assert scope.cancelled_caught
    assert anyio.current_time() - started == pytest.approx(3_600)
    assert gateway.charges() == 0


async def test_mock_clock_is_in_use() -> None:
    """This module's tests run on a trio MockClock, so virtual deadlines cost no real time."""
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)


async def test_latency_is_spent_in_loop_time() -> None:
    """latency_s delays a charge by exactly that much loop time."""
    gateway = SandboxGateway(latency_s=2.5)
    started = anyio.current_time()
    charge = await gateway.charge(amount_cents=1, card_token="tok_visa", idempotency_key="k1")
    assert charge.status is ChargeStatus.SUCCEEDED
    assert anyio.current_time() - started == pytest.approx(2.5)


async def test_same_key_charges_once() -> None:
    """Retrying with the same idempotency key returns the first charge and charges once."""
    gateway = SandboxGateway()
    first = await gateway.charge(amount_cents=1_500, card_token="tok_visa", idempotency_key="k1")
    again = await gateway.charge(amount_cents=1_500, card_token="tok_visa", idempotency_key="k1")
    assert again == first
    assert gateway.charges() == 1


async def test_retry_with_another_card_returns_the_first_charge() -> None:
    """After a success, any retry under that key returns the original charge, whatever the card."""
    gateway = SandboxGateway()
    first = await gateway.charge(amount_cents=1_500, card_token="tok_visa", idempotency_key="k1")
    for card in ("tok_declined", "tok_mastercard", "tok_timeout"):
        with anyio.fail_after(1):
            again = await gateway.charge(amount_cents=1_500, card_token=card, idempotency_key="k1")
        assert again is first
    assert gateway.charges() == 1


async def test_different_keys_charge_separately() -> None:
    """Each idempotency key is its own charge with its own reference."""
    gateway = SandboxGateway()
    a = await gateway.charge(amount_cents=1, card_token="tok_visa", idempotency_key="a")
    b = await gateway.charge(amount_cents=1, card_token="tok_mastercard", idempotency_key="b")
    assert a.reference != b.reference
    assert gateway.charges() == 2


async def test_declined_key_can_be_retried_with_a_good_card() -> None:
    """A decline is not remembered: retrying the key with a good card succeeds once."""
    gateway = SandboxGateway()
    declined = await gateway.charge(amount_cents=1, card_token="tok_declined", idempotency_key="k")
    ok = await gateway.charge(amount_cents=1, card_token="tok_visa", idempotency_key="k")
    assert declined.status is ChargeStatus.DECLINED
    assert ok.status is ChargeStatus.SUCCEEDED
    assert gateway.charges() == 1


async def test_concurrent_retries_with_same_key_get_one_charge() -> None:
    """Two in-flight charges under one key (latency > 0) yield one charge, the same reference."""
    gateway = SandboxGateway(latency_s=1.0)
    results: list[Charge] = []

    async def pay() -> None:
        results.append(
            await gateway.charge(amount_cents=1_500, card_token="tok_visa", idempotency_key="k1")
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(pay)
        tg.start_soon(pay)
    assert gateway.charges() == 1
    assert results[0] == results[1]


def test_sandbox_card_table() -> None:
    """The documented sandbox cards are exactly the six the gateways act on."""
    assert set(SANDBOX_CARDS) == {
        "tok_visa",
        "tok_mastercard",
        "tok_declined",
        "tok_timeout",
        "tok_fail_after_charge",
        "tok_slow",
    }


async def test_a_failure_after_charging_is_revealed_by_retrieve() -> None:
    """tok_fail_after_charge is charged, then fails: the caller sees GatewayUnavailable, and
    only retrieve tells it the money was taken."""
    gateway = SandboxGateway()
    with pytest.raises(GatewayUnavailable):
        await gateway.charge(
            amount_cents=900, card_token="tok_fail_after_charge", idempotency_key="k"
        )
    found = await gateway.retrieve(idempotency_key="k")
    assert found is not None and found.status is ChargeStatus.SUCCEEDED
    assert gateway.balance_cents() == 900


async def test_retrieve_finds_the_charge_made_under_a_key() -> None:
    """An unknown outcome is resolved by asking: the key's charge, or None if nothing was made."""
    gateway = SandboxGateway()
    assert await gateway.retrieve(idempotency_key="k1") is None
    with anyio.move_on_after(5):
        await gateway.charge(amount_cents=100, card_token="tok_timeout", idempotency_key="k1")
    assert await gateway.retrieve(idempotency_key="k1") is None
    charge = await gateway.charge(amount_cents=100, card_token="tok_visa", idempotency_key="k2")
    assert await gateway.retrieve(idempotency_key="k2") == charge


async def test_refunds_are_partial_or_whole_and_once_per_key() -> None:
    """Parts of a charge come back until none is left; a retried key refunds once."""
    gateway = SandboxGateway()
    charge = await gateway.charge(amount_cents=1_000, card_token="tok_visa", idempotency_key="k")
    first = await gateway.refund(
        charge_reference=charge.reference, amount_cents=400, idempotency_key="r1"
    )
    again = await gateway.refund(
        charge_reference=charge.reference, amount_cents=400, idempotency_key="r1"
    )
    assert again == first
    assert (first.charge_reference, first.amount_cents) == (charge.reference, 400)
    assert gateway.balance_cents() == 600
    with pytest.raises(RefundRefused):
        await gateway.refund(
            charge_reference=charge.reference, amount_cents=601, idempotency_key="r2"
        )
    await gateway.refund(charge_reference=charge.reference, amount_cents=600, idempotency_key="r3")
    assert gateway.balance_cents() == 0


@pytest.mark.parametrize("amount", [0, -1])
async def test_a_refund_of_nothing_or_of_no_charge_is_refused(amount: int) -> None:
    """A refund names a charge the gateway made and a positive amount."""
    gateway = SandboxGateway()
    charge = await gateway.charge(amount_cents=1_000, card_token="tok_visa", idempotency_key="k")
    with pytest.raises(RefundRefused):
        await gateway.refund(
            charge_reference=charge.reference, amount_cents=amount, idempotency_key="r"
        )
    with pytest.raises(RefundRefused):
        await gateway.refund(charge_reference="sbx_nope", amount_cents=1, idempotency_key="r")
    assert gateway.balance_cents() == 1_000


async def test_void_stops_later_charges_and_reports_a_captured_one() -> None:
    """After a void nothing is charged under the key; a charge made before is handed back."""
    gateway = SandboxGateway()
    assert await gateway.void(idempotency_key="k1") is None
    late = await gateway.charge(amount_cents=100, card_token="tok_visa", idempotency_key="k1")
    assert late.status is ChargeStatus.DECLINED
    assert gateway.charges() == 0
    made = await gateway.charge(amount_cents=100, card_token="tok_visa", idempotency_key="k2")
    assert await gateway.void(idempotency_key="k2") == made
