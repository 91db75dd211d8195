"""Signed tokens: a client's place in line, the right to pay for a hold, and a booking's.

A token is ``<kind>.<event>.<seq>.<expires_s>.<signature>``, the signature an
HMAC-SHA256 (truncated to 128 bits, base64url) over the rest with the server
secret. Nothing about a token is secret except the key; forging one needs it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum

__all__ = ["Claims", "InvalidToken", "TokenExpired", "TokenKind", "TokenSigner"]


class TokenKind(Enum):
    """What a token grants."""

    QUEUE = "q"  # resume a place in line
    HOLD = "h"  # pay for a hold, read its booking
    BOOKING = "b"  # read the booking a hold became, long after the hold ended


class InvalidToken(Exception):
    """The token is malformed, forged, of the wrong kind, or expired."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says."""

    kind: TokenKind
    event_id: str
    seq: int
    expires_s: int


class TokenExpired(InvalidToken):
    """A genuine token of the right kind whose time has passed; ``claims`` are what it says."""

    def __init__(self, claims: Claims) -> None:
        super().__init__("token expired")
        self.claims = claims


class TokenSigner:
    """Signs and verifies tokens with one server secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret  # the HMAC key; never logged

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, kind: TokenKind, event_id: str, seq: int, expires_s: int) -> str:
        """A token of ``kind`` for ticket ``seq`` of ``event_id``, valid until ``expires_s``."""
        body = f"{kind.value}.{event_id}.{seq}.{expires_s}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str, kind: TokenKind, now_s: float) -> Claims:
        """The claims of a genuine, unexpired token of ``kind``; else InvalidToken."""
        parts = token.split(".")
        if len(parts) != 5:
            raise InvalidToken("malformed token")
        body, signature = token.rsplit(".", 1)
        if not token.isascii() or not hmac.compare_digest(self._sign(body), signature):
            raise InvalidToken("bad signature")
        kind_s, event_id, seq_s, expires_s = parts[:4]
        if kind_s != kind.value:
            raise InvalidToken("wrong kind of token")
        try:
            claims = Claims(kind, event_id, int(seq_s), int(expires_s))
        except ValueError as exc:
            raise InvalidToken("malformed token") from exc
        if claims.expires_s < now_s:
            raise TokenExpired(claims)
        return claims
