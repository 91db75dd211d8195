"""Building the waiting room's server messages from what the line and the engine say.

Pure functions: no I/O, no clock. The one place an outcome of the line becomes a
wire message, whether it is delivered live or told again to a client that came back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.holds import HoldOffer
from realtime import protocol as p
from waitroom.eta import OutflowEstimator, SaleOutlook, Wait, estimate_wait, position
from waitroom.records import Confirmed, Expired, Left, Outcome, Prompted, SoldOut

__all__ = ["outcome_message", "position_message", "prompt_message", "queued_message"]


def _basis(wait: Wait) -> p.WaitBasisName:
    return wait.basis.value


def queued_message(
    estimator: OutflowEstimator,
    outlook: SaleOutlook,
    serving: int,
    seq: int,
    place: int,
    token: str,
    *,
    sold_out_for_now: bool = False,
) -> p.Queued:
    """The ``queued`` message for ticket ``seq`` at ``place`` (0: in the pre-queue);
    ``sold_out_for_now``: the event is sold out, the place kept for seats that may return."""
    if place == 0:
        return p.Queued(
            ticket=seq, token=token, position=0, eta_s=None, eta_basis="not_open", pre_queue=True
        )
    pos = position(place, serving)
    wait = estimate_wait(estimator, pos, outlook)
    return p.Queued(
        ticket=seq,
        token=token,
        position=pos,
        eta_s=wait.eta_s,
        eta_low_s=wait.low_s,
        eta_high_s=wait.high_s,
        eta_basis=_basis(wait),
        sold_out_for_now=sold_out_for_now,
    )


def position_message(
    pos: int, wait: Wait, *, seats_may_return: bool, sold_out_for_now: bool = False
) -> p.Position:
    """The ``position`` message for a client at ``pos`` whose wait is ``wait``."""
    return p.Position(
        position=pos,
        eta_s=wait.eta_s,
        eta_low_s=wait.low_s,
        eta_high_s=wait.high_s,
        eta_basis=_basis(wait),
        seats_may_return=seats_may_return,
        sold_out_for_now=sold_out_for_now,
    )


def prompt_message(offer: HoldOffer) -> p.Prompt:
    """The ``prompt`` message of a hold's offer."""
    return p.Prompt(
        hold_id=offer.hold_id,
        hold_token=offer.token,
        seats=[p.Seat(section=s.section, row=s.row, number=s.number) for s in offer.seats],
        amount_cents=offer.amount_cents,
        expires_at=datetime.fromtimestamp(offer.expires_ms / 1000, UTC).isoformat(),
        expires_ms=offer.expires_ms,
    )


def outcome_message(outcome: Outcome, offer: HoldOffer | None = None) -> p.ServerMessage:
    """The message telling a client its outcome (a prompt needs the hold's ``offer``)."""
    match outcome:
        case Prompted():
            assert offer is not None, "a prompt is made from the hold's offer"
            return prompt_message(offer)
        case Confirmed():
            return p.Confirmed(booking_id=outcome.booking_id)
        case Expired():
            return p.Expired()
        case SoldOut():
            return p.SoldOut()
        case Left():
            return p.Left()
