"""The payment gateway port, and a sandbox adapter with test card tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import anyio

__all__ = ["SANDBOX_CARDS", "Charge", "ChargeStatus", "PaymentGateway", "SandboxGateway"]


class ChargeStatus(Enum):
    """What the gateway said."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class Charge:
    """A gateway's answer: its reference and status."""

    reference: str
    status: ChargeStatus


class PaymentGateway(Protocol):
    """Charges a card. Must be idempotent per ``idempotency_key``: a retry never charges twice.

    It may take arbitrarily long; callers bound it with a cancel scope.
    """

    async def charge(self, *, amount_cents: int, card_token: str, idempotency_key: str) -> Charge:
        """Charge ``amount_cents`` to the card behind ``card_token``."""
        ...


#: Card tokens the sandbox understands, and what each does.
SANDBOX_CARDS = {
    "tok_visa": "succeeds",
    "tok_mastercard": "succeeds",
    "tok_declined": "is declined",
    "tok_timeout": "never answers (the caller's deadline ends it)",
    # any other token is declined
}


@dataclass
class SandboxGateway:
    """A gateway for development and tests: behaviour chosen by the card token."""

    latency_s: float = 0.0
    _charges: dict[str, Charge] = field(default_factory=dict)
    _in_flight: dict[str, anyio.Event] = field(default_factory=dict)

    async def charge(self, *, amount_cents: int, card_token: str, idempotency_key: str) -> Charge:
        """Charge per the sandbox rules (see :data:`SANDBOX_CARDS`); a key charges at most once."""
        while (
            idempotency_key in self._in_flight
        ):  # a retry overlapping the first attempt waits for it
            await self._in_flight[idempotency_key].wait()
        if idempotency_key in self._charges:
            return self._charges[idempotency_key]
        self._in_flight[idempotency_key] = anyio.Event()
        try:
            return await self._charge(card_token, idempotency_key)
        finally:
            self._in_flight.pop(idempotency_key).set()

    async def _charge(self, card_token: str, idempotency_key: str) -> Charge:
        if card_token == "tok_timeout":
            await anyio.sleep_forever()
        if self.latency_s:
            await anyio.sleep(self.latency_s)
        succeeds = SANDBOX_CARDS.get(card_token) == "succeeds"
        status = ChargeStatus.SUCCEEDED if succeeds else ChargeStatus.DECLINED
        charge = Charge(reference="sbx_" + secrets.token_hex(8), status=status)
        if status is ChargeStatus.SUCCEEDED:
            self._charges[idempotency_key] = charge
        return charge

    def charges(self) -> int:
        """How many successful charges were made (each key once)."""
        return len(self._charges)
