"""The Stripe adapter against the sandbox gateway process: charges, declines, idempotency
(Stripe's rules, on the wire too), failures after charging, timeouts, voids, refunds, and the
sandbox's state surviving a restart."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from engine.payments import ChargeStatus, GatewayUnavailable, RefundRefused
from storage.embedded import GATEWAY_URL_FILE, start_gateway_process
from storage.stripe_gateway import StripeGateway
from tests.api.helpers import gateway_ledger
from tests.conftest import RUNTIME

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer sk_test_wire"}


def _key(name: str) -> str:
    return f"{name}-{secrets.token_hex(6)}"


@pytest.fixture
async def gateway(sandbox_gateway: str) -> AsyncIterator[StripeGateway]:
    """The Stripe adapter pointed at the session's sandbox gateway."""
    adapter = StripeGateway("sk_test_adapter", api_base=sandbox_gateway, sandbox=True)
    try:
        yield adapter
    finally:
        await adapter.aclose()


def _start(data_dir: Path, *flags: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "api.cli", "gateway", "--runtime", RUNTIME, *flags]
    return start_gateway_process(argv, data_dir)


@pytest.fixture
def own_sandbox(data_dir: Path) -> Iterator[tuple[str, Path]]:
    """A sandbox gateway process of this test alone (tok_slow answers after 3 s); its URL and
    data directory."""
    proc = _start(data_dir, "--slow-s", "3")
    try:
        yield (data_dir / GATEWAY_URL_FILE).read_text().strip(), data_dir
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("card", ["tok_visa", "tok_mastercard"])
async def test_good_cards_are_charged_once_per_key(
    gateway: StripeGateway, sandbox_gateway: str, card: str
) -> None:
    """A good card is charged; the same key again answers the same charge, charging nothing."""
    before = await gateway_ledger(sandbox_gateway)
    key = _key("good")
    first = await gateway.charge(
        amount_cents=1_500, currency="EUR", card_token=card, idempotency_key=key
    )
    again = await gateway.charge(
        amount_cents=1_500, currency="EUR", card_token=card, idempotency_key=key
    )
    assert first.status is ChargeStatus.SUCCEEDED and first.reference.startswith("pi_")
    assert again == first
    found = await gateway.retrieve(idempotency_key=key, amount_cents=1_500, currency="EUR")
    assert found == first
    after = await gateway_ledger(sandbox_gateway)
    assert (
        after["charges"] - before["charges"],
        after["charged_cents"] - before["charged_cents"],
    ) == (1, 1_500)


@pytest.mark.parametrize("card", ["tok_declined", "tok_unknown", "TOK_VISA"])
async def test_declines_charge_nothing_and_another_card_may_follow(
    gateway: StripeGateway, sandbox_gateway: str, card: str
) -> None:
    """A declined card charges nothing; retrieve finds nothing; a good card under the same key
    then pays, once."""
    before = await gateway_ledger(sandbox_gateway)
    key = _key("declined")
    declined = await gateway.charge(
        amount_cents=800, currency="EUR", card_token=card, idempotency_key=key
    )
    assert declined.status is ChargeStatus.DECLINED
    assert await gateway.retrieve(idempotency_key=key, amount_cents=800, currency="EUR") is None
    assert await gateway_ledger(sandbox_gateway) == before
    paid = await gateway.charge(
        amount_cents=800, currency="EUR", card_token="tok_visa", idempotency_key=key
    )
    assert paid.status is ChargeStatus.SUCCEEDED
    assert paid.reference == declined.reference  # the same PaymentIntent, confirmed again
    after = await gateway_ledger(sandbox_gateway)
    assert after["charged_cents"] - before["charged_cents"] == 800


async def test_test_cards_are_refused_outside_the_sandbox(sandbox_gateway: str) -> None:
    """Configured for a real provider, the adapter declines the sandbox's test cards without a
    call: nothing reaches the gateway."""
    real = StripeGateway("sk_test_real", api_base=sandbox_gateway)
    before = await gateway_ledger(sandbox_gateway)
    try:
        charge = await real.charge(
            amount_cents=100, currency="EUR", card_token="tok_visa", idempotency_key=_key("r")
        )
    finally:
        await real.aclose()
    assert charge.status is ChargeStatus.DECLINED
    assert await gateway_ledger(sandbox_gateway) == before


async def test_an_unreachable_gateway_is_an_unknown_outcome() -> None:
    """Nothing listens at the gateway's address: every call says unavailable (the outcome is
    unknown: the caller asks again later), never a decline and never a raw transport error."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = StripeGateway("sk_test_gone", api_base=f"http://127.0.0.1:{port}", sandbox=True)
    key = _key("gone")
    try:
        with pytest.raises(GatewayUnavailable, match="network error"):
            await adapter.charge(
                amount_cents=500, currency="EUR", card_token="tok_visa", idempotency_key=key
            )
        with pytest.raises(GatewayUnavailable):
            await adapter.retrieve(idempotency_key=key, amount_cents=500, currency="EUR")
        with pytest.raises(GatewayUnavailable):
            await adapter.void(idempotency_key=key, amount_cents=500, currency="EUR")
        with pytest.raises(GatewayUnavailable):
            await adapter.refund(charge_reference="pi_x", amount_cents=1, idempotency_key=key)
    finally:
        await adapter.aclose()


async def test_a_failure_after_charging_is_revealed_by_retrieve(
    gateway: StripeGateway, sandbox_gateway: str
) -> None:
    """tok_fail_after_charge: charged, then answered 500, and the same 500 on a retry (Stripe
    keeps a key's answer); only retrieve tells that the money was taken."""
    before = await gateway_ledger(sandbox_gateway)
    key = _key("after")
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            await gateway.charge(
                amount_cents=700,
                currency="EUR",
                card_token="tok_fail_after_charge",
                idempotency_key=key,
            )
    found = await gateway.retrieve(idempotency_key=key, amount_cents=700, currency="EUR")
    assert found is not None and found.status is ChargeStatus.SUCCEEDED
    assert await gateway.void(idempotency_key=key, amount_cents=700, currency="EUR") == found
    after = await gateway_ledger(sandbox_gateway)
    assert (
        after["charges"] - before["charges"],
        after["charged_cents"] - before["charged_cents"],
    ) == (1, 700)


async def test_a_timed_out_charge_is_voided_and_never_charges(
    gateway: StripeGateway, sandbox_gateway: str
) -> None:
    """tok_timeout never answers; after the caller's deadline retrieve finds nothing, void
    cancels the payment, and the key never charges afterwards, whatever the card."""
    before = await gateway_ledger(sandbox_gateway)
    key = _key("timeout")
    with anyio.move_on_after(1) as scope:
        await gateway.charge(
            amount_cents=900, currency="EUR", card_token="tok_timeout", idempotency_key=key
        )
    assert scope.cancelled_caught
    assert await gateway.retrieve(idempotency_key=key, amount_cents=900, currency="EUR") is None
    assert await gateway.void(idempotency_key=key, amount_cents=900, currency="EUR") is None
    late = await gateway.charge(
        amount_cents=900, currency="EUR", card_token="tok_visa", idempotency_key=key
    )
    assert late.status is ChargeStatus.DECLINED
    assert await gateway_ledger(sandbox_gateway) == before


async def test_refunds_whole_or_part_once_per_key(
    gateway: StripeGateway, sandbox_gateway: str
) -> None:
    """Parts of a charge come back until none is left, each key once; more than is left, no
    such charge, or nothing at all is refused; the ledger is charged minus refunded."""
    before = await gateway_ledger(sandbox_gateway)
    charge = await gateway.charge(
        amount_cents=1_000, currency="EUR", card_token="tok_visa", idempotency_key=_key("c")
    )
    r1 = _key("r1")
    first = await gateway.refund(
        charge_reference=charge.reference, amount_cents=400, idempotency_key=r1
    )
    again = await gateway.refund(
        charge_reference=charge.reference, amount_cents=400, idempotency_key=r1
    )
    assert again == first and (first.charge_reference, first.amount_cents) == (
        charge.reference,
        400,
    )
    for amount, name in ((601, "too much"), (0, "nothing")):
        with pytest.raises(RefundRefused):
            await gateway.refund(
                charge_reference=charge.reference, amount_cents=amount, idempotency_key=_key(name)
            )
    with pytest.raises(RefundRefused):
        await gateway.refund(charge_reference="pi_nope", amount_cents=1, idempotency_key=_key("n"))
    rest = await gateway.refund(
        charge_reference=charge.reference, amount_cents=600, idempotency_key=_key("r2")
    )
    assert rest.amount_cents == 600
    with pytest.raises(RefundRefused):
        await gateway.refund(
            charge_reference=charge.reference, amount_cents=1, idempotency_key=_key("r3")
        )
    after = await gateway_ledger(sandbox_gateway)
    assert after["charged_cents"] - before["charged_cents"] == 1_000
    assert after["refunded_cents"] - before["refunded_cents"] == 1_000
    assert after["balance_cents"] == before["balance_cents"]


async def test_idempotency_keys_follow_stripes_rules_on_the_wire(sandbox_gateway: str) -> None:
    """Same key and parameters: the first answer again, byte for byte, marked replayed;
    other parameters: 400 idempotency_error; no sk_test_ key: 401."""
    async with httpx.AsyncClient(base_url=sandbox_gateway, trust_env=False, timeout=10) as http:
        key = {"Idempotency-Key": _key("wire")}
        body = {"amount": "1200", "currency": "eur"}
        first = await http.post("/v1/payment_intents", data=body, headers=AUTH | key)
        again = await http.post("/v1/payment_intents", data=body, headers=AUTH | key)
        assert first.status_code == again.status_code == 200
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        other = await http.post(
            "/v1/payment_intents", data={**body, "amount": "1300"}, headers=AUTH | key
        )
        assert other.status_code == 400
        assert other.json()["error"]["type"] == "idempotency_error"
        for auth in ({}, {"Authorization": "Bearer sk_live_x"}, {"Authorization": "sk_test_x"}):
            refused = await http.post("/v1/payment_intents", data=body, headers=auth)
            assert refused.status_code == 401, auth
        bad = await http.post("/v1/payment_intents", data={"currency": "eur"}, headers=AUTH)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "amount"


async def test_a_key_in_use_is_409_and_unavailable(own_sandbox: tuple[str, Path]) -> None:
    """While the first request of a key runs (tok_slow: charged, answered after 3 s), the same
    key answers 409 idempotency_key_in_use: the adapter says unavailable, and retrieve finds
    the charge."""
    url, _ = own_sandbox
    adapter = StripeGateway("sk_test_slow", api_base=url, sandbox=True)
    key = _key("slow")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: adapter.charge(
                    amount_cents=300, currency="EUR", card_token="tok_slow", idempotency_key=key
                )
            )
            found = None
            with anyio.fail_after(10):
                while found is None:  # the slow charge is made at once, answered later
                    await anyio.sleep(0.05)
                    found = await adapter.retrieve(
                        idempotency_key=key, amount_cents=300, currency="EUR"
                    )
            with pytest.raises(GatewayUnavailable, match="in-progress"):
                await adapter.charge(
                    amount_cents=300, currency="EUR", card_token="tok_slow", idempotency_key=key
                )
        done = await adapter.charge(
            amount_cents=300, currency="EUR", card_token="tok_slow", idempotency_key=key
        )
        assert done == found
    finally:
        await adapter.aclose()
    ledger = await gateway_ledger(url)
    assert (ledger["charges"], ledger["charged_cents"]) == (1, 300)


async def test_the_sandbox_keeps_its_state_across_a_restart(data_dir: Path) -> None:
    """Stopped and started again on its data directory, the sandbox still knows its charges,
    refunds and the answers of its keys."""
    proc = _start(data_dir)
    url = (data_dir / GATEWAY_URL_FILE).read_text().strip()
    key = _key("kept")
    adapter = StripeGateway("sk_test_kept", api_base=url, sandbox=True)
    try:
        charge = await adapter.charge(
            amount_cents=2_500, currency="EUR", card_token="tok_visa", idempotency_key=key
        )
        await adapter.refund(
            charge_reference=charge.reference, amount_cents=500, idempotency_key=key + "/r"
        )
    finally:
        await adapter.aclose()
        proc.terminate()
        proc.wait(timeout=10)
    proc = _start(data_dir)
    url = (data_dir / GATEWAY_URL_FILE).read_text().strip()
    adapter = StripeGateway("sk_test_kept", api_base=url, sandbox=True)
    try:
        assert (
            await adapter.retrieve(idempotency_key=key, amount_cents=2_500, currency="EUR")
            == charge
        )
        replayed = await adapter.charge(
            amount_cents=2_500, currency="EUR", card_token="tok_visa", idempotency_key=key
        )
        assert replayed == charge
        assert await gateway_ledger(url) == {
            "charged_cents": 2_500,
            "refunded_cents": 500,
            "balance_cents": 2_000,
            "charges": 1,
            "refunds": 1,
        }
    finally:
        await adapter.aclose()
        proc.terminate()
        proc.wait(timeout=10)
