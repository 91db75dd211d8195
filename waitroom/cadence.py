"""How often each waiting client may be sent its position, within a budget of frames per second.

A server ranks its waiting clients of an event by place (rank 1 is the nearest
the head) and takes them in groups of ``head`` (K): ranks 1..K get the base
interval b (one tick), ranks K+1..2K get 2b, and so on; rank k gets b·⌈k/K⌉.
The wait between updates grows with the distance to the head, as the wait
itself does, and is always a whole number of ticks, so what is planned is what
the ticker sends. With N clients in m = ⌈N/K⌉ groups the planned rate is

    R(K, N) = (K·H(m-1) + (N - (m-1)·K) / m) / b  ≈  (K/b)·(0.58 + ln(N/K)),

where H is the harmonic number. R grows with K, so the largest K with
R ≤ budget is found by bisection. Then:

- the total rate is at most the budget, whatever N;
- ranks 1..K get every change at the base interval whenever the budget is at
  least H(N)/b (about 11 frames/s for 19,000 clients at b = 1 s; below that,
  every interval is stretched by the same factor to fit);
- intervals never shrink with rank;
- no client waits longer than b·⌈N/K⌉ (e.g. 19,000 clients, 1,000 frames/s:
  K = 193, 99 s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Cadence", "harmonic", "plan_cadence", "planned_rate", "share_budget"]

#: Below this, harmonic numbers are summed; from it, the asymptotic series is exact to ~1e-15.
_EXACT_HARMONIC = 256
_HARMONIC_TABLE = [0.0]
for _n in range(1, _EXACT_HARMONIC):
    _HARMONIC_TABLE.append(_HARMONIC_TABLE[-1] + 1 / _n)
_EULER_GAMMA = 0.5772156649015329


def harmonic(n: int) -> float:
    """H(n) = 1 + 1/2 + ... + 1/n (0 for n ≤ 0)."""
    if n < _EXACT_HARMONIC:
        return _HARMONIC_TABLE[n] if n > 0 else 0.0
    inv2 = 1 / (n * n)
    return math.log(n) + _EULER_GAMMA + 1 / (2 * n) - inv2 / 12 + inv2 * inv2 / 120


def planned_rate(head: int, clients: int, base_s: float) -> float:
    """Frames per second when rank k gets ``base_s``·⌈k/head⌉."""
    if head >= clients:
        return clients / base_s
    groups = -(-clients // head)
    last = clients - (groups - 1) * head
    return (head * harmonic(groups - 1) + last / groups) / base_s


@dataclass(frozen=True, slots=True)
class Cadence:
    """The update interval of each rank: ``base_s`` up to rank ``head``, one more tick for
    each further group of ``head`` ranks (all scaled by ``stretch`` when even the first
    rank does not fit the budget at the base interval)."""

    base_s: float
    head: int  # K: the ranks at the base interval, and the size of each later group
    stretch: float = 1.0  # > 1 only when the budget is below H(N)/base_s

    def interval_s(self, rank: int) -> float:
        """Seconds between position updates of the client at ``rank`` (1 = nearest the head)."""
        return self.base_s * self.stretch * -(-rank // self.head)

    def max_interval_s(self, clients: int) -> float:
        """The longest interval of any of ``clients`` ranks."""
        return self.interval_s(max(clients, 1))


def plan_cadence(budget_per_s: float, clients: int, base_s: float) -> Cadence:
    """The cadence that keeps ``clients`` ranks within ``budget_per_s`` frames per second:
    the largest ``head`` whose :func:`planned_rate` fits (every rank, when all fit)."""
    if budget_per_s <= 0 or base_s <= 0:
        raise ValueError("the budget and the base interval must be positive")
    if clients / base_s <= budget_per_s:
        return Cadence(base_s, max(clients, 1))
    lowest = planned_rate(1, clients, base_s)  # H(N)/b
    if lowest > budget_per_s:
        return Cadence(base_s, 1, lowest / budget_per_s)
    low, high = 1, clients  # planned_rate(low) ≤ budget < planned_rate(high)
    while high - low > 1:
        mid = (low + high) // 2
        if planned_rate(mid, clients, base_s) <= budget_per_s:
            low = mid
        else:
            high = mid
    return Cadence(base_s, low)


def share_budget(budget_per_s: float, clients: Sequence[int], base_s: float) -> list[float]:
    """Split a server's budget over its events, max-min fair.

    An event whose ``clients`` all fit at the base interval takes only that
    (``clients / base_s``); the rest is shared equally by the others, so a small
    event's line moves at full cadence next to a large one. The shares add up to
    at most ``budget_per_s``.
    """
    shares = [0.0] * len(clients)
    left, remaining = budget_per_s, len(clients)
    for i in sorted(range(len(clients)), key=clients.__getitem__):
        level = left / remaining
        shares[i] = min(clients[i] / base_s, level)
        left -= shares[i]
        remaining -= 1
    return shares
