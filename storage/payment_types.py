"""The payment port's value types: what a gateway answers and how it fails.

A leaf, so that the adapters in ``storage/`` (which talk to the outside provider) and the
engine (which owns the port, ``engine/payments.py``, and re-exports these) share one set.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "SANDBOX_CARDS",
    "Charge",
    "ChargeStatus",
    "GatewayUnavailable",
    "Refund",
    "RefundRefused",
]


class ChargeStatus(Enum):
    """What the gateway said."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class Charge:
    """A gateway's answer: its reference and status."""

    reference: str
    status: ChargeStatus


@dataclass(frozen=True, slots=True)
class Refund:
    """Money given back on a charge: the gateway's reference for it, and how much."""

    reference: str
    charge_reference: str
    amount_cents: int


class GatewayUnavailable(Exception):
    """The gateway could not be reached or failed on its side: the outcome is unknown, and
    the same call (same idempotency key) may be retried."""


class RefundRefused(Exception):
    """The gateway refused a refund for good: no such charge, or more than is left of it."""


#: Card tokens the sandbox gateways understand, and what each does. Outside the sandbox
#: (``BOOKING_GATEWAY=stripe``) every one of them is refused without reaching the provider.
SANDBOX_CARDS = {
    "tok_visa": "succeeds",
    "tok_mastercard": "succeeds",
    "tok_declined": "is declined",
    "tok_timeout": "never answers (the caller's deadline ends it)",
    "tok_fail_after_charge": "is charged, then answered 500: only retrieve reveals the charge",
    "tok_slow": "is charged at once, answered only after the sandbox's slow delay",
    # any other token is declined
}
