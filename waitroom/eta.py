"""Position and estimated wait: pure arithmetic over the serving counter.

A client's position is its ticket seq minus the serving counter (the seq of the
last client decided). The wait estimate divides the position by the measured
outflow of the line, smoothed with an exponentially weighted moving average.

Outflow is only measured while the sale is open and somebody waits: an idle or
paused line leaving nobody says nothing about how fast it moves. What a client is
told (:func:`estimate_wait`) says what the estimate rests on (:class:`WaitBasis`):
the measured outflow, the caps before anything was measured, or no number at all
when the line is paused or stalled (everyone admitted is still checking out). No
estimate is above the longest the caps allow (:func:`worst_wait_s`): every hold
ends within the hold time, so the line cannot stand still longer than that while
the sale is open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from storage.records import EventState, EventStatus

__all__ = [
    "MAX_ETA_S",
    "OutflowEstimator",
    "SaleOutlook",
    "Wait",
    "WaitBasis",
    "admission_prior",
    "estimate_wait",
    "position",
    "update_interval",
    "wire_eta",
    "worst_wait_s",
]


def position(seq: int, serving: int) -> int:
    """How many clients are decided before this one (1 = next)."""
    return max(seq - serving, 0)


def admission_prior(max_active: int, hold_s: float, rate_per_min: int) -> float:
    """Clients per second the caps allow at most: the outflow to assume until measured.

    Checkout turns over ``max_active`` holds per ``hold_s`` at worst (everyone lets
    the hold run out); a rate cap, when set, may be lower.
    """
    rate = max_active / hold_s
    return min(rate, rate_per_min / 60) if rate_per_min > 0 else rate


#: The longest wait shown; a stalled line (no outflow measured) shows this.
MAX_ETA_S = 86_400.0


def wire_eta(eta_s: float) -> float:
    """An estimate fit to send: finite, at most :data:`MAX_ETA_S`, to a tenth of a second."""
    return round(min(eta_s, MAX_ETA_S), 1)


def update_interval(eta_s: float, base_s: float, *, max_factor: float = 10.0) -> float:
    """How long to wait before the next position update of a client ``eta_s`` from the head.

    A tenth of the remaining wait, between ``base_s`` and ``max_factor * base_s``:
    the head of the line sees every change, the back of a long line a few a
    minute, which keeps the messages per second bounded as the line grows.
    """
    return min(max(eta_s / 10, base_s), max_factor * base_s)


@dataclass
class OutflowEstimator:
    """Smoothed clients-per-second leaving the head of the line.

    ``observe`` is fed the serving counter with the time it was seen; ``eta_s``
    answers for a position. Until outflow has been seen, ``prior_rate`` (e.g.
    checkout capacity / hold time) stands in: windows in which nobody left are not a
    measurement until somebody has (they only count towards ``stalled``).
    """

    prior_rate: float
    half_life_s: float = 5.0
    #: Counted seconds without anyone leaving before the line is called stalled (at
    #: least three clients' worth at the measured rate, so a slow line does not flicker).
    stall_after_s: float = 10.0
    _rate: float | None = None
    _var: float = 0.0
    _last_serving: int | None = None
    _last_t: float | None = None
    _still_s: float = 0.0  # counted seconds since the serving counter last moved
    _moving_rate: float | None = None  # the rate when the serving counter last moved

    def observe(self, serving: int, t: float, *, counting: bool = True) -> None:
        """Record the serving counter seen at time ``t`` (seconds, monotonic).

        ``counting`` False: the window ending now measured nothing (the sale was not
        open, or nobody was waiting when it began); the estimate is kept as it was and
        the next window starts here.
        """
        if self._last_serving is None or self._last_t is None or not counting:
            self._last_serving, self._last_t = serving, t
            return
        dt = t - self._last_t
        if dt < 0.2:  # too short a window to measure a rate
            return
        moved = max(serving - self._last_serving, 0)
        self._still_s = 0.0 if moved else self._still_s + dt
        sample = moved / dt
        weight = 1 - 0.5 ** (dt / self.half_life_s)
        if self._rate is None:
            if sample > 0:
                self._rate = sample
        else:
            diff = sample - self._rate
            self._rate += weight * diff
            self._var = (1 - weight) * (self._var + weight * diff * diff)
        if moved:
            self._moving_rate = self._rate
        self._last_serving, self._last_t = serving, t

    @property
    def stalled(self) -> bool:
        """Nobody has left the line for a while although people waited (and the sale was open).

        "A while" is three clients' worth at the rate the line had when it last moved (at
        least ``stall_after_s``): not the estimate that decays while nobody leaves, which
        would push the moment further away with every still second.
        """
        floor = 3 / self._moving_rate if self._moving_rate else 0.0
        return self._still_s >= max(self.stall_after_s, floor)

    @property
    def measured(self) -> bool:
        """Whether any outflow has been measured (the prior stands in until then)."""
        return self._rate is not None

    @property
    def rate(self) -> float:
        """Clients per second (the prior until measured; a stalled line measures 0)."""
        return self.prior_rate if self._rate is None else self._rate

    def eta_s(self, pos: int) -> float:
        """Estimated seconds until position ``pos`` is decided."""
        rate = self.rate
        return pos / rate if rate > 0 else float("inf")

    def eta_range_s(self, pos: int) -> tuple[float, float]:
        """A range for the wait of position ``pos``: the rate plus or minus one standard
        deviation of the measured samples (a factor of two either way on the prior)."""
        rate = self.rate
        if rate <= 0:
            return float("inf"), float("inf")
        if self._rate is None:
            return pos / (2 * rate), 2 * pos / rate
        sd = self._var**0.5
        return pos / (rate + sd), pos / max(rate - sd, rate / 4)


class WaitBasis(StrEnum):
    """What a wait estimate rests on (sent with it; the page words each one)."""

    #: The line's measured outflow.
    MEASURED = "measured"
    #: Nothing measured yet: the most the admission caps allow.
    CAPS = "caps"
    #: People wait but nobody left the line in the last measured window: the buyers
    #: admitted are checking out. No number until someone finishes.
    STALLED = "stalled"
    #: Admission is paused by the organiser: no number until it resumes.
    PAUSED = "paused"
    #: The sale has not opened yet: the client is in the pre-queue, without a place.
    NOT_OPEN = "not_open"
    #: Sold out or closed: nobody else will be admitted.
    OVER = "over"


@dataclass(frozen=True, slots=True)
class SaleOutlook:
    """What the estimate needs to know of the sale now (from the event's status)."""

    state: EventState
    hold_s: float
    max_active: int
    #: 0: no rate cap.
    rate_per_min: int

    @classmethod
    def of(cls, status: EventStatus) -> SaleOutlook:
        """The state and caps of an event's status."""
        return cls(
            state=status.state,
            hold_s=max(status.hold_ms, 1000) / 1000,  # every event has one; never divide by 0
            max_active=status.max_active,
            rate_per_min=status.rate_per_min,
        )


def worst_wait_s(pos: int, outlook: SaleOutlook) -> float:
    """The longest position ``pos`` can wait while the sale stays open.

    At most ``max_active`` holds are open, and each ends (paid or expired) within
    ``hold_s``; so every ``hold_s`` at least ``max_active`` clients leave the line,
    unless the rate cap is lower.
    """
    by_holds = outlook.hold_s * math.ceil(pos / max(outlook.max_active, 1))
    by_rate = pos * 60 / outlook.rate_per_min if outlook.rate_per_min > 0 else 0.0
    return max(by_holds, by_rate)


@dataclass(frozen=True, slots=True)
class Wait:
    """An estimated wait as a client is told it: ``eta_s`` None when there is no honest number."""

    eta_s: float | None
    low_s: float
    high_s: float
    basis: WaitBasis


def estimate_wait(estimator: OutflowEstimator, pos: int, outlook: SaleOutlook) -> Wait:
    """The wait of position ``pos``: the estimate, its range and what it rests on.

    Never above :func:`worst_wait_s` (nor :data:`MAX_ETA_S`); no number at all while
    the sale is paused, over, or stalled. (The pre-queue, before the opening, has no
    position: its ``queued`` message says ``not_open`` without asking here.)
    """
    state = outlook.state
    if state == EventState.PAUSED:
        return Wait(None, 0.0, 0.0, WaitBasis.PAUSED)
    # A client with a position has a place, so the line has opened: a state read just
    # before the opening may still say scheduled.
    if state not in (EventState.OPEN, EventState.SCHEDULED):
        return Wait(None, 0.0, 0.0, WaitBasis.OVER)
    worst = min(worst_wait_s(pos, outlook), MAX_ETA_S)
    if estimator.stalled or estimator.rate <= 0:
        return Wait(None, 0.0, wire_eta(worst), WaitBasis.STALLED)
    basis = WaitBasis.MEASURED if estimator.measured else WaitBasis.CAPS
    low, high = estimator.eta_range_s(pos)
    eta = min(estimator.eta_s(pos), worst)
    return Wait(wire_eta(eta), wire_eta(min(low, eta)), wire_eta(min(high, worst)), basis)
