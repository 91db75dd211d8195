"""The payment gateway port, and an in-process sandbox adapter for the engine's unit tests.

The port's value types live in the leaf ``storage/payment_types.py`` (the Stripe adapter in
``storage/`` answers in them too) and are re-exported here, where the engine and the edges
name them. A deployment pays through ``storage.stripe_gateway.StripeGateway``: against
Stripe, or against the sandbox gateway process (``booking gateway``) that speaks the same API.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from storage.payment_types import (
    SANDBOX_CARDS,
    Charge,
    ChargeStatus,
    GatewayUnavailable,
    Refund,
    RefundRefused,
)

__all__ = [
    "SANDBOX_CARDS",
    "Charge",
    "ChargeStatus",
    "GatewayUnavailable",
    "PaymentGateway",
    "Refund",
    "RefundRefused",
    "SandboxGateway",
]


class PaymentGateway(Protocol):
    """What a payment provider offers. Every call that moves money is idempotent per
    ``idempotency_key``: a retry never charges or refunds twice, and returns the first answer.

    Any call may take arbitrarily long; callers bound it with a cancel scope, and resolve an
    unknown outcome (a timeout, a crash after the call) by asking :meth:`retrieve`, with the
    amount and currency the charge was asked for (a provider may need them to find it).
    """

    async def charge(
        self, *, amount_cents: int, currency: str, card_token: str, idempotency_key: str
    ) -> Charge:
        """Charge ``amount_cents`` (in ``currency``, ISO 4217) to the card behind
        ``card_token`` (authorise and capture)."""
        ...

    async def retrieve(
        self, *, idempotency_key: str, amount_cents: int, currency: str
    ) -> Charge | None:
        """The successful charge made under ``idempotency_key``, or None if there is none."""
        ...

    async def refund(
        self, *, charge_reference: str, amount_cents: int, idempotency_key: str
    ) -> Refund:
        """Give back ``amount_cents`` of a charge (all of it or part). RefundRefused if the
        charge is unknown or less than that is left of it."""
        ...

    async def void(
        self, *, idempotency_key: str, amount_cents: int, currency: str
    ) -> Charge | None:
        """Make sure nothing more is charged under ``idempotency_key``: a payment not yet
        captured is cancelled (None). If it was captured already, that charge is returned, and
        it is the caller's to refund."""
        ...


@dataclass
class SandboxGateway:
    """An in-process gateway for the engine's unit tests: behaviour chosen by the card token
    (:data:`SANDBOX_CARDS`). Deployments and the API's tests use the sandbox gateway process
    through the Stripe adapter instead."""

    latency_s: float = 0.0
    #: How long ``tok_slow`` takes to answer (it is charged at once).
    slow_s: float = 60.0
    _charges: dict[str, Charge] = field(default_factory=dict)
    _in_flight: dict[str, anyio.Event] = field(default_factory=dict)
    _voided: set[str] = field(default_factory=set)
    _refunds: dict[str, Refund] = field(default_factory=dict)
    _amounts: dict[str, int] = field(default_factory=dict)  # charge reference -> cents charged
    _refunded: dict[str, int] = field(default_factory=dict)  # charge reference -> cents refunded

    async def charge(
        self,
        *,
        amount_cents: int,
        card_token: str,
        idempotency_key: str,
        currency: str = "EUR",
    ) -> Charge:
        """Charge per the sandbox rules (see :data:`SANDBOX_CARDS`); a key charges at most once."""
        while (
            idempotency_key in self._in_flight
        ):  # a retry overlapping the first attempt waits for it
            await self._in_flight[idempotency_key].wait()
        if idempotency_key in self._charges:
            return self._charges[idempotency_key]
        if idempotency_key in self._voided:
            return Charge(reference="", status=ChargeStatus.DECLINED)
        self._in_flight[idempotency_key] = anyio.Event()
        try:
            return await self._charge(amount_cents, card_token, idempotency_key)
        finally:
            self._in_flight.pop(idempotency_key).set()

    async def _charge(self, amount_cents: int, card_token: str, idempotency_key: str) -> Charge:
        if card_token == "tok_timeout":
            await anyio.sleep_forever()
        if self.latency_s:
            await anyio.sleep(self.latency_s)
        succeeds = SANDBOX_CARDS.get(card_token) == "succeeds" or card_token in (
            "tok_fail_after_charge",
            "tok_slow",
        )
        status = ChargeStatus.SUCCEEDED if succeeds else ChargeStatus.DECLINED
        charge = Charge(reference="sbx_" + secrets.token_hex(8), status=status)
        if status is ChargeStatus.SUCCEEDED:
            self._charges[idempotency_key] = charge
            self._amounts[charge.reference] = amount_cents
        if card_token == "tok_fail_after_charge":
            raise GatewayUnavailable("the sandbox failed after charging")
        if card_token == "tok_slow":
            await anyio.sleep(self.slow_s)
        return charge

    async def retrieve(
        self, *, idempotency_key: str, amount_cents: int = 0, currency: str = "EUR"
    ) -> Charge | None:
        """The successful charge under the key, if one was made."""
        return self._charges.get(idempotency_key)

    async def refund(
        self, *, charge_reference: str, amount_cents: int, idempotency_key: str
    ) -> Refund:
        """Refund part or all of a charge, once per key."""
        if self.latency_s:
            await anyio.sleep(self.latency_s)
        if idempotency_key in self._refunds:
            return self._refunds[idempotency_key]
        if charge_reference not in self._amounts:
            raise RefundRefused(f"no charge {charge_reference!r}")
        left = self._amounts[charge_reference] - self._refunded.get(charge_reference, 0)
        if not 0 < amount_cents <= left:
            raise RefundRefused(f"{amount_cents} cents asked, {left} left of {charge_reference!r}")
        refund = Refund("sbx_re_" + secrets.token_hex(8), charge_reference, amount_cents)
        self._refunds[idempotency_key] = refund
        self._refunded[charge_reference] = self._refunded.get(charge_reference, 0) + amount_cents
        return refund

    async def void(
        self, *, idempotency_key: str, amount_cents: int = 0, currency: str = "EUR"
    ) -> Charge | None:
        """Refuse any later charge under the key; the charge made already, if any."""
        self._voided.add(idempotency_key)
        return self._charges.get(idempotency_key)

    def charges(self) -> int:
        """How many successful charges were made (each key once)."""
        return len(self._charges)

    def balance_cents(self) -> int:
        """Charged minus refunded, over every charge."""
        return sum(self._amounts.values()) - sum(self._refunded.values())
