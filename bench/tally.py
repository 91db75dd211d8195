"""Where a sale stands, counted from the buyers' results: one tally for the progress
display and the summary, so that the last frame and the summary agree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import msgspec

from bench.client import ClientResult

__all__ = ["RateWindow", "Tally", "tally_of"]


class Tally(msgspec.Struct, frozen=True):
    """Buyers by where they are, and the seats they bought."""

    connected: int = 0  # sent their join
    joined: int = 0  # got a place in line (a ticket)
    never_joined: int = 0  # ended without a place in line (a failed connection or join)
    waiting: int = 0  # in line, no prompt yet, no outcome
    holding: int = 0  # prompted, seats held, no outcome yet (deciding or paying)
    admitted: int = 0  # prompted: seats were held for them
    confirmed: int = 0  # paid: a booking
    expired: int = 0  # their hold ran out
    sold_out: int = 0  # told nothing is left
    left: int = 0  # closed the page while waiting
    errors: int = 0  # ended in an error
    seats_sold: int = 0  # seats of the confirmed buyers

    def __add__(self, other: Tally) -> Tally:
        """Two processes' buyers together."""
        fields = self.__struct_fields__
        return Tally(*(getattr(self, f) + getattr(other, f) for f in fields))

    @property
    def decided(self) -> int:
        """Buyers with an outcome."""
        return self.confirmed + self.expired + self.sold_out + self.left + self.errors


def tally_of(results: Iterable[ClientResult]) -> Tally:
    """Count ``results`` (the summary's numbers and every progress frame's). Each bench
    process counts its ~19,000 clients twice a second while they run: locals, not a dict
    of counters, keep that to ~2 ms."""
    connected = joined = admitted = never_joined = holding = waiting = seats_sold = 0
    ended = dict.fromkeys(("confirmed", "expired", "sold_out", "left", "error"), 0)
    for r in results:
        if r.joined_at:
            connected += 1
        if r.ticket:
            joined += 1
        if r.prompted_at:
            admitted += 1
        outcome = r.outcome
        if outcome:
            if not r.ticket:
                never_joined += 1
            if outcome in ended:
                ended[outcome] += 1
            if outcome == "confirmed":
                seats_sold += r.seats
        elif r.prompted_at:
            holding += 1
        elif r.ticket:
            waiting += 1
    return Tally(
        connected=connected,
        joined=joined,
        never_joined=never_joined,
        waiting=waiting,
        holding=holding,
        admitted=admitted,
        confirmed=ended["confirmed"],
        expired=ended["expired"],
        sold_out=ended["sold_out"],
        left=ended["left"],
        errors=ended["error"],
        seats_sold=seats_sold,
    )


class RateWindow:
    """Rates over the last ``window_s`` seconds of tallies, not over the whole run."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s  # how far back a rate looks, s
        self._points: deque[tuple[float, Tally]] = deque()  # (time, tally), oldest first

    def add(self, now: float, tally: Tally) -> None:
        """Record ``tally`` as of ``now`` (seconds, any monotonic origin)."""
        self._points.append((now, tally))
        # Keep one point at or before the window's start, so a rate spans the whole window.
        while len(self._points) > 2 and self._points[1][0] <= now - self.window_s:
            self._points.popleft()

    def per_s(self, field: str) -> float:
        """How fast ``field`` of the tally grew over the window, per second (0 before two points)."""
        if len(self._points) < 2:
            return 0.0
        (t0, first), (t1, last) = self._points[0], self._points[-1]
        if t1 <= t0:
            return 0.0
        return float(getattr(last, field) - getattr(first, field)) / (t1 - t0)
