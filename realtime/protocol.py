"""Waiting-room WebSocket messages, v1: JSON text frames tagged by ``type``.

New fields get defaults so older clients keep working; what clients send is
decoded strictly (unknown fields are refused with an ``error`` message).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "Challenge",
    "ClientMessage",
    "Confirmed",
    "Error",
    "Expired",
    "Heartbeat",
    "Join",
    "Left",
    "Ping",
    "Pong",
    "Position",
    "Prompt",
    "Queued",
    "Resume",
    "Seat",
    "ServerMessage",
    "SoldOut",
    "WaitBasisName",
    "client_decoder",
    "encode",
    "server_decoder",
]


class _Message(
    msgspec.Struct, tag_field="type", tag=str.lower, kw_only=True, frozen=True, omit_defaults=True
):
    """Base of every message: ``type`` is the lower-cased class name (or the given tag)."""


class _ClientMessage(_Message, forbid_unknown_fields=True, frozen=True):
    pass


ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class Join(_ClientMessage, frozen=True):
    """Take a place in line for ``quantity`` seats (in ``section``, or any).

    ``identity``: the identity token an event that requires one asks for (signed by the
    operator's site, or by ``POST /v1/events/{id}/identity/verify``). With it the place
    belongs to the person the token names, not to ``client_id``: the person's other
    devices get the same place back. ``challenge``: the solved proof of work; a join
    without it, on an event that asks for one, is answered with a ``challenge`` to solve
    (and changes nothing): send ``join`` again with the solution.
    """

    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)]
    client_id: ClientId
    section: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    identity: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)] | None = None
    #: The solved proof of work (an ALTCHA payload, base64) of a ``challenge`` message
    #: (or of ``GET /v1/events/{id}/challenge``), when the event asks for one (used once).
    challenge: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None


class Resume(_ClientMessage, frozen=True):
    """Reattach to a place after a reconnect, with the token from ``queued``."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Ping(_ClientMessage, frozen=True):
    """Are you there? (answered with ``pong``; sending one also keeps the connection busy)."""


ClientMessage = Join | Resume | Ping


#: What a wait estimate rests on: ``measured`` (the line's outflow), ``caps`` (nothing
#: measured yet: the admission caps), ``stalled`` (nobody has left the line lately: the
#: buyers ahead are checking out; ``eta_s`` null), ``paused`` (admission paused; null),
#: ``not_open`` (the sale has not opened; null), ``over`` (sold out or closed; null; with
#: ``sold_out_for_now`` the place is kept and the wait goes on if seats come back).
WaitBasisName = Literal["measured", "caps", "stalled", "paused", "not_open", "over"]


class Queued(_Message, frozen=True):
    """You are in line: keep ``token`` to resume.

    ``pre_queue``: you joined before the sale opens; your place is drawn at random
    when it opens (``position`` is 0 until then, followed by a ``position``).
    ``sold_out_for_now``: as in ``position``.
    ``eta_s``: the estimated wait in seconds, null when there is no honest number
    (``eta_basis`` says why). It is never above the longest the admission caps allow.
    ``eta_low_s`` / ``eta_high_s`` bound the estimated wait (0 when not known; while
    ``stalled``, ``eta_high_s`` is the longest the caps allow).
    """

    ticket: int
    token: str
    position: int
    eta_s: float | None
    eta_low_s: float = 0.0
    eta_high_s: float = 0.0
    eta_basis: WaitBasisName = "measured"
    pre_queue: bool = False
    sold_out_for_now: bool = False


class Position(_Message, frozen=True):
    """Your place in line has moved, or what its wait rests on changed (``eta_s``,
    ``eta_low_s``, ``eta_high_s``, ``eta_basis``: as in ``queued``).

    ``seats_may_return``: no seat is free, but open holds may still be released;
    if they are, admission goes on in order (sent again when this changes).

    ``sold_out_for_now``: sold out for now: no seat is free and no hold is open, but
    seats may come back if bookings are cancelled; keep your place. If they come
    back, admission goes on from the head of the line, in order, before anyone who
    joins later (a ``position`` with it false says so); if the sale ends first, you
    are told ``sold_out``. Sent to every waiting client at once when the event sells
    out, and again when it changes.
    """

    position: int
    eta_s: float | None
    eta_low_s: float = 0.0
    eta_high_s: float = 0.0
    eta_basis: WaitBasisName = "measured"
    seats_may_return: bool = False
    sold_out_for_now: bool = False


class Seat(msgspec.Struct, frozen=True):
    """One held seat."""

    section: str
    row: str
    number: int


class Prompt(_Message, frozen=True):
    """Seats are held for you: pay before ``expires_at``."""

    hold_id: str
    hold_token: str
    seats: list[Seat]
    amount_cents: int
    expires_at: str
    expires_ms: int
    #: When the server traces: the W3C ``traceparent`` to send as the payment's
    #: ``traceparent`` header, so the payment joins this booking's trace.
    traceparent: str | None = None


class Confirmed(_Message, frozen=True):
    """Your payment went through."""

    booking_id: str


class Expired(_Message, frozen=True):
    """Your hold ran out; the seats went back on sale."""


class SoldOut(_Message, frozen=True, tag="sold_out"):
    """Nothing is left for you (final: the sale is over, or nothing can be held for
    your order; "sold out for now" is a ``position`` with ``sold_out_for_now``)."""


class Left(_Message, frozen=True):
    """You were away longer than the grace period when your turn came: your place was given up."""


class Heartbeat(_Message, frozen=True):
    """Sent at a fixed interval so clients (and proxies) know the connection is alive."""


class Pong(_Message, frozen=True):
    """The answer to ``ping``."""


class Challenge(_Message, frozen=True):
    """The event asks for proof of work and the ``join`` brought none: solve ``challenge``
    (ALTCHA v2, as ``GET /v1/events/{id}/challenge`` gives it: ``parameters`` and
    ``signature``) and send the same ``join`` again with the payload (base64 JSON of
    ``challenge`` and ``solution``) as its ``challenge``. ``difficulty``: the counter's
    range now. Nothing changed: the connection has no place yet."""

    challenge: dict[str, Any]
    difficulty: int


class Error(_Message, frozen=True):
    """Your last message was refused (or the server cannot serve you)."""

    code: str
    message: str


ServerMessage = (
    Queued
    | Position
    | Prompt
    | Confirmed
    | Expired
    | SoldOut
    | Left
    | Heartbeat
    | Pong
    | Challenge
    | Error
)

client_decoder = msgspec.json.Decoder(ClientMessage)
server_decoder = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()


def encode(message: ServerMessage | ClientMessage) -> bytes:
    """One message as a JSON frame."""
    return _encoder.encode(message)
