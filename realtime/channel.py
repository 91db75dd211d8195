"""One event's clients on this server, ranked by place, and which of them a position round updates.

No I/O: a round decides which clients are due a position frame within the
round's allowance, nearest the head first, and queues the frames on their
sessions (``ClientSession.send_position`` only queues). The hub's tasks call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from realtime import protocol as p
from realtime.delivery import DeliveryBacklog
from realtime.messages import position_message
from realtime.session import ClientSession
from waitroom.cadence import Cadence, share_budget
from waitroom.eta import (
    OutflowEstimator,
    SaleOutlook,
    WaitBasis,
    estimate_wait,
    position,
    update_interval,
)
from waitroom.records import EventState

__all__ = ["UNKNOWN_OUTLOOK", "EventChannel", "budget_share"]

#: What a channel assumes of its sale until it has read the event's status.
UNKNOWN_OUTLOOK = SaleOutlook(EventState.SCHEDULED, hold_s=1.0, max_active=1, rate_per_min=0)


@dataclass
class EventChannel:
    """This server's clients of one event."""

    event_id: str
    estimator: OutflowEstimator  # measured outflow of the line, for wait estimates
    outlook: SaleOutlook = UNKNOWN_OUTLOOK  # state and caps as last read, for wait estimates
    sessions: dict[int, ClientSession] = field(default_factory=dict)  # ticket seq -> its connection
    serving: int = 0  # the newest serving counter seen
    state: EventState = EventState.SCHEDULED  # the event's admission state as last seen
    last_notify_id: str = "0-0"  # the notify entry read last
    routed_id: str = "0-0"  # the newest notify entry whose outcomes are all queued here
    backlog: DeliveryBacklog = field(default_factory=DeliveryBacklog)  # prompts not yet written
    ready: anyio.Event = field(default_factory=anyio.Event)  # set once the reader is positioned
    ranked: list[ClientSession] = field(default_factory=list)  # placed sessions by place
    ranked_unsorted: bool = False  # a session joined ``ranked`` out of place order
    ranked_stale: bool = False  # a session in ``ranked`` was detached or decided
    allowance: float = 0.0  # position frames this event may still send (carried between ticks)
    prompts_at_round: int = 0  # the backlog's ``routed`` at the last position round
    counting: bool = False  # the sale was open with somebody waiting at the last status read

    def rank(self, session: ClientSession) -> None:
        """Add a placed session to the ranking (joins come in place order: no sort needed)."""
        if self.ranked and session.place < self.ranked[-1].place:
            self.ranked_unsorted = True
        self.ranked.append(session)

    def refresh_ranking(self) -> None:
        """Drop detached and decided sessions from the ranking; sort it only if one joined
        out of place order (places never change once drawn)."""
        if self.ranked_stale or self.ranked_unsorted:
            sessions = self.sessions
            self.ranked = [s for s in self.ranked if s.waiting and sessions.get(s.seq) is s]
            self.ranked_stale = False
        if self.ranked_unsorted:
            self.ranked.sort(key=_place)
            self.ranked_unsorted = False

    def push_positions(
        self,
        cadence: Cadence,
        *,
        seats_may_return: bool,
        allowance: int,
        now: float,
        base_s: float,
    ) -> int:
        """Queue due position updates nearest the head first, at most ``allowance``; the count.

        A client is due once its interval has passed since its last update: its rank's
        interval under ``cadence`` (whole ticks), or a tenth of its wait if longer. It is
        sent a frame when its position, ``seats_may_return``, whether the event is sold
        out for now (``state``) or what its wait rests on (:class:`WaitBasis`, the same
        for the whole line) changed; otherwise it stays due. Due times are rounded to the nearest tick, so a rank's interval of n ticks
        is n ticks whatever the jitter of the tick itself.
        """
        horizon = now + base_s / 2
        serving = self.serving
        estimator, outlook = self.estimator, self.outlook
        basis: WaitBasis = estimate_wait(estimator, 1, outlook).basis
        sold_out_for_now = self.state == EventState.SOLD_OUT
        rank = sent = 0
        for session in self.ranked:
            if not session.waiting:  # decided since the ranking was refreshed
                continue
            rank += 1
            if session.backed_up:  # frames wait for it already: it stays due
                continue
            if session.next_position_at > horizon and sold_out_for_now == session.sold_out_for_now:
                continue
            pos = position(session.place, serving)
            if (
                pos == session.last_position
                and seats_may_return == session.seats_may_return
                and sold_out_for_now == session.sold_out_for_now
                and basis == session.wait_basis
            ):
                continue
            if sent >= allowance:
                break
            session.seats_may_return = seats_may_return
            session.sold_out_for_now = sold_out_for_now
            wait = estimate_wait(estimator, pos, outlook)
            session.wait_basis = wait.basis
            message = position_message(
                pos, wait, seats_may_return=seats_may_return, sold_out_for_now=sold_out_for_now
            )
            session.send_position(pos, p.encode(message))
            eta = wait.eta_s if wait.eta_s is not None else wait.high_s
            session.next_position_at = now + max(
                cadence.interval_s(rank), update_interval(eta, base_s)
            )
            sent += 1
        return sent


def budget_share(
    channels: Sequence[EventChannel], ch: EventChannel, frames_per_s: float, interval_s: float
) -> float:
    """``ch``'s part of a server's position frames per second, shared by clients in line."""
    if len(channels) == 1:
        return frames_per_s
    shares = share_budget(frames_per_s, [len(c.ranked) for c in channels], interval_s)
    return shares[list(channels).index(ch)]


def _place(session: ClientSession) -> int:
    return session.place
