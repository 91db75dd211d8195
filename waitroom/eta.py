"""Position and estimated wait: pure arithmetic over the serving counter.

A client's position is its ticket seq minus the serving counter (the seq of the
last client decided). The wait estimate divides the position by the measured
outflow of the line, smoothed with an exponentially weighted moving average.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_ETA_S",
    "OutflowEstimator",
    "admission_prior",
    "position",
    "update_interval",
    "wire_eta",
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
    checkout capacity / hold time) stands in.
    """

    prior_rate: float
    half_life_s: float = 5.0
    _rate: float | None = None
    _var: float = 0.0
    _last_serving: int | None = None
    _last_t: float | None = None

    def observe(self, serving: int, t: float) -> None:
        """Record the serving counter seen at time ``t`` (seconds, monotonic)."""
        if self._last_serving is None or self._last_t is None:
            self._last_serving, self._last_t = serving, t
            return
        dt = t - self._last_t
        if dt < 0.2:  # too short a window to measure a rate
            return
        sample = max(serving - self._last_serving, 0) / dt
        weight = 1 - 0.5 ** (dt / self.half_life_s)
        if self._rate is None:
            self._rate = sample
        else:
            diff = sample - self._rate
            self._rate += weight * diff
            self._var = (1 - weight) * (self._var + weight * diff * diff)
        self._last_serving, self._last_t = serving, t

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
