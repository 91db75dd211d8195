"""Holds: their public names, the offer a client sees, and who may pay for one.

A hold is named ``<event>.<ticket seq>``: a ticket has at most one hold, so a
retried admission of the same ticket is the same hold. Its offer is what the
client is prompted with: labelled seats, the amount, the deadline and the hold
token that lets its holder (and only its holder) pay and read the booking.
Once paid, the holder also gets a booking token: it reads the booking (and its
tickets) until a fixed time kept with the booking, long after the hold token ran out.
"""

from __future__ import annotations

import re

import msgspec

from engine.catalog import EventCatalog
from engine.errors import Forbidden, HoldExpired, NotFound, Unauthorized
from engine.events import seat_label
from plumbing.clock import Clock
from storage.records import Prompted
from waitroom.tokens import Claims, InvalidToken, TokenExpired, TokenKind, TokenSigner

__all__ = ["HeldSeat", "HoldOffer", "Holds", "hold_id", "parse_hold_id"]

_HOLD_ID = re.compile(r"^([A-Za-z0-9_-]{1,64})\.([0-9]{1,12})$", re.ASCII)


def hold_id(event_id: str, seq: int) -> str:
    """The public name of ticket ``seq``'s hold in ``event_id``."""
    return f"{event_id}.{seq}"


def parse_hold_id(value: str) -> tuple[str, int]:
    """(event id, ticket seq) of a hold id; NotFound if it is not one."""
    match = _HOLD_ID.match(value)
    if match is None:
        raise NotFound("no such hold")
    return match.group(1), int(match.group(2))


class HeldSeat(msgspec.Struct, frozen=True):
    """One held seat, as people name it."""

    section: str
    row: str
    number: int


class HoldOffer(msgspec.Struct, frozen=True):
    """Seats held for a client: what it is prompted to pay for, and its right to pay."""

    hold_id: str
    #: Signed proof of holding: pays for the hold and reads its booking.
    token: str
    seats: list[HeldSeat]
    amount_cents: int
    #: When the hold runs out, ms since the epoch.
    expires_ms: int


class Holds:
    """Makes offers of held seats and checks hold tokens."""

    def __init__(
        self, catalog: EventCatalog, signer: TokenSigner, clock: Clock, *, payment_window_s: float
    ) -> None:
        self._catalog = catalog  # seat labels
        self._signer = signer  # hold tokens
        self._clock = clock  # token expiry
        self._payment_window_s = payment_window_s  # a token outlives its hold by this

    async def offer(self, event_id: str, held: Prompted) -> HoldOffer:
        """The offer of a hold the line made (seats labelled, token signed)."""
        spec = await self._catalog.get(event_id)
        section = spec.section(held.section)
        assert section is not None, "a hold names a section of its event"
        seats = []
        for position in held.seats:
            label = seat_label(section, position)
            seats.append(HeldSeat(held.section, label.row, label.number))
        # The token outlives the hold by the payment window: a payment begun in time
        # may still be retried, and a late one is told it expired (409), not refused.
        expires_s = held.expires_ms // 1000 + int(self._payment_window_s) + 1
        token = self._signer.issue(TokenKind.HOLD, event_id, held.seq, expires_s)
        return HoldOffer(
            hold_id=hold_id(event_id, held.seq),
            token=token,
            seats=seats,
            amount_cents=held.amount_cents,
            expires_ms=held.expires_ms,
        )

    def _claims(self, token: str, *, expired_ok: bool) -> Claims:
        try:
            return self._signer.verify(token, TokenKind.HOLD, self._clock.now_ms() / 1000)
        except InvalidToken as exc:
            if expired_ok and isinstance(exc, TokenExpired):
                return exc.claims
            raise Unauthorized(f"hold token refused: {exc}") from None

    def authorize_payment(self, token: str, hold: str) -> tuple[str, int]:
        """(event id, ticket seq) of ``hold`` if ``token`` is its holder's.

        Unauthorized for a forged token, Forbidden for another hold's, HoldExpired once
        the token has run out (a genuine token outlives its hold by the payment window).
        """
        claims = self._claims(token, expired_ok=True)
        event_id, seq = parse_hold_id(hold)
        if (claims.event_id, claims.seq) != (event_id, seq):
            raise Forbidden("this token is for another hold")
        if claims.expires_s < self._clock.now_ms() / 1000:
            raise HoldExpired("the hold expired; its seats went back on sale")
        return event_id, seq

    def reader(self, token: str) -> str:
        """The hold whose booking ``token`` may read: a live hold token's, or a booking
        token's; Unauthorized for anything else."""
        if token.startswith(f"{TokenKind.BOOKING.value}."):
            try:
                claims = self._signer.verify(token, TokenKind.BOOKING, self._clock.now_ms() / 1000)
            except InvalidToken as exc:
                raise Unauthorized(f"booking token refused: {exc}") from None
        else:
            claims = self._claims(token, expired_ok=False)
        return hold_id(claims.event_id, claims.seq)

    def booking_token(self, hold: str, expires_s: int) -> str:
        """The booking token of the booking ``hold`` became, valid until ``expires_s``.

        Deterministic: the same booking (its expiry is stored with it) always gets the
        same token, so a replayed payment answers byte for byte what the first one did.
        """
        event_id, seq = parse_hold_id(hold)
        return self._signer.issue(TokenKind.BOOKING, event_id, seq, expires_s)

    def authorize_reading(self, token: str, hold: str) -> None:
        """Pass if ``token`` is the unexpired hold token or booking token of ``hold``;
        else Unauthorized or Forbidden."""
        if self.reader(token) != hold:
            raise Forbidden("this token is for another booking")
