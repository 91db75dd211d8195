"""Ticket codes a scanner can check offline: the ticket's facts signed with Ed25519.

A code is ``T1.<event>.<booking>.<section>.<position>.<signature>``: the facts in
plain URL-safe text (ids never contain a dot), the signature an Ed25519 signature
(64 bytes, base64url without padding) over everything before it. The deployment's
public key (``GET /v1/events/{id}/ticket-key``) verifies a code with no call to the
server; only the private key, from the settings, can make one. Ed25519 signatures
are deterministic, so a code is a pure function of its facts and the key; the
booking id in it keeps the code unique when a seat is sold again after a cancel.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "CODE_VERSION",
    "InvalidTicketCode",
    "TicketClaims",
    "TicketCodes",
    "public_key_text",
    "verify_ticket_code",
]

#: The first part of every code: the format, so that a later one can be told apart.
CODE_VERSION = "T1"
_SIGNATURE_CHARS = 86  # 64 bytes in base64url without padding
_PARTS = 6


class InvalidTicketCode(ValueError):
    """The code is malformed or its signature does not verify with the key."""


@dataclass(frozen=True, slots=True)
class TicketClaims:
    """What a genuine code says."""

    event_id: str
    booking_id: str
    section: str
    position: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64url without padding (as the route publishes it)."""
    return _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def verify_ticket_code(code: str, public_key: str) -> TicketClaims:
    """The claims of ``code`` if ``public_key`` (base64url, raw 32 bytes) signed it;
    else InvalidTicketCode. What a scanner does offline."""
    try:
        key = Ed25519PublicKey.from_public_bytes(_unb64(public_key))
    except (ValueError, binascii.Error) as exc:
        raise InvalidTicketCode("not an Ed25519 public key") from exc
    return _verify(code, key)


def _verify(code: str, key: Ed25519PublicKey) -> TicketClaims:
    if not code.isascii():
        raise InvalidTicketCode("malformed ticket code")
    parts = code.split(".")
    if len(parts) != _PARTS or parts[0] != CODE_VERSION or len(parts[-1]) != _SIGNATURE_CHARS:
        raise InvalidTicketCode("malformed ticket code")
    body = code[: -_SIGNATURE_CHARS - 1]
    try:
        signature = _unb64(parts[-1])
        # One spelling per signature: base64's unused last bits must be zero, so that no
        # second string passes for the same code.
        if _b64(signature) != parts[-1]:
            raise InvalidTicketCode("malformed ticket code")
        key.verify(signature, body.encode())
    except (InvalidSignature, ValueError, binascii.Error):
        raise InvalidTicketCode("the signature does not verify") from None
    _, event_id, booking_id, section, position = parts[:-1]
    if not position.isdigit():
        raise InvalidTicketCode("malformed ticket code")
    return TicketClaims(event_id, booking_id, section, int(position))


class TicketCodes:
    """Signs ticket codes with the deployment's private key."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("the ticket key is a 32-byte Ed25519 seed")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)  # never logged
        self.public_key = public_key_text(self._key.public_key())  # for scanners, base64url

    def issue(self, event_id: str, booking_id: str, section: str, position: int) -> str:
        """The code of the ticket for ``position`` of ``section`` in ``booking_id``."""
        body = f"{CODE_VERSION}.{event_id}.{booking_id}.{section}.{position}"
        return f"{body}.{_b64(self._key.sign(body.encode()))}"

    def verify(self, code: str) -> TicketClaims:
        """The claims of a code this deployment signed; else InvalidTicketCode."""
        return _verify(code, self._key.public_key())
