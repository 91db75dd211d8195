"""Position cadence within a frame budget: pure arithmetic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waitroom.cadence import Cadence, harmonic, plan_cadence, planned_rate, share_budget

pytestmark = pytest.mark.once

budgets = st.floats(min_value=0.5, max_value=100_000.0)
clients = st.integers(min_value=0, max_value=2_000_000)
bases = st.floats(min_value=0.1, max_value=10.0)


def _direct_rate(cadence: Cadence, n: int) -> float:
    """Frames per second summed rank by rank."""
    return math.fsum(1 / cadence.interval_s(k) for k in range(1, n + 1))


@pytest.mark.parametrize("n", [0, 1, 2, 10, 255, 256, 257, 1_000, 100_000])
def test_harmonic_matches_the_sum(n: int) -> None:
    """H(n) agrees with 1 + 1/2 + ... + 1/n on both sides of the switch to the series."""
    assert harmonic(n) == pytest.approx(math.fsum(1 / k for k in range(1, n + 1)), rel=1e-12)


def _rate(cadence: Cadence, n: int) -> float:
    """The plan's frames per second, from the closed form."""
    return planned_rate(cadence.head, n, cadence.base_s) / cadence.stretch


@given(budget=budgets, n=clients, base=bases)
def test_total_rate_stays_within_the_budget(budget: float, n: int, base: float) -> None:
    """Whatever the number of clients, the planned frames per second do not exceed the budget."""
    assert _rate(plan_cadence(budget, n, base), n) <= budget * (1 + 1e-9)


@given(
    budget=st.floats(min_value=0.5, max_value=5_000.0),
    n=st.integers(min_value=0, max_value=5_000),
    base=bases,
)
def test_rank_by_rank_sum_is_the_planned_rate(budget: float, n: int, base: float) -> None:
    """Summing 1/interval over every rank gives the closed form, within the budget."""
    cadence = plan_cadence(budget, n, base)
    assert _direct_rate(cadence, n) == pytest.approx(_rate(cadence, n), rel=1e-9, abs=1e-12)
    assert _direct_rate(cadence, n) <= budget * (1 + 1e-9)


@given(budget=budgets, n=st.integers(min_value=1, max_value=2_000_000), base=bases)
def test_head_is_as_large_as_the_budget_allows(budget: float, n: int, base: float) -> None:
    """One more rank at the base interval would break the budget (or everyone has it)."""
    cadence = plan_cadence(budget, n, base)
    if cadence.head < n and cadence.stretch == 1:
        assert planned_rate(cadence.head + 1, n, base) > budget
    if n / base <= budget:
        assert cadence.max_interval_s(n) == base


@given(budget=budgets, n=clients, base=bases)
def test_head_gets_the_base_interval(budget: float, n: int, base: float) -> None:
    """Ranks 1..head get the base interval whenever the budget allows H(N)/base frames/s;
    below that every interval is stretched alike."""
    cadence = plan_cadence(budget, n, base)
    if budget * base >= harmonic(n) * (1 + 1e-12):
        assert cadence.stretch == 1
        assert cadence.interval_s(1) == cadence.interval_s(cadence.head) == base
    else:
        assert cadence.head == 1
        assert cadence.interval_s(1) > base


@given(budget=budgets, n=clients, base=bases, rank=st.integers(min_value=1, max_value=2_000_000))
def test_interval_is_monotone_in_rank(budget: float, n: int, base: float, rank: int) -> None:
    """A client further back never gets updates more often than one ahead of it."""
    cadence = plan_cadence(budget, n, base)
    assert base <= cadence.interval_s(rank) <= cadence.interval_s(rank + 1)


@given(budget=budgets, n=clients, base=bases, rank=st.integers(min_value=1, max_value=2_000_000))
def test_intervals_are_whole_ticks(budget: float, n: int, base: float, rank: int) -> None:
    """With the head at the base interval every interval is a whole number of base intervals,
    so a ticker that runs every base interval sends what was planned."""
    cadence = plan_cadence(budget, n, base)
    if cadence.stretch == 1:
        ticks = cadence.interval_s(rank) / base
        assert ticks == pytest.approx(round(ticks))


@given(budget=budgets, n=clients, base=bases)
def test_every_client_is_updated_within_the_stated_maximum(
    budget: float, n: int, base: float
) -> None:
    """No rank waits longer than base·⌈N/head⌉ (times the stretch), the last rank's interval."""
    cadence = plan_cadence(budget, n, base)
    longest = cadence.max_interval_s(n)
    assert longest == pytest.approx(base * cadence.stretch * math.ceil(max(n, 1) / cadence.head))
    assert all(cadence.interval_s(k) <= longest for k in (1, n // 2 + 1, max(n, 1)))


@pytest.mark.parametrize(
    ("budget", "n", "head", "longest"),
    [
        (1_000.0, 500, 500, 1.0),  # all fit: everyone at the base interval
        (1_000.0, 10_000, 229, 44.0),
        (1_000.0, 19_000, 193, 99.0),
        (500.0, 19_000, 83, 229.0),
        (1_000.0, 100_000, 139, 720.0),
    ],
)
def test_plans_at_the_sizes_of_a_sale(budget: float, n: int, head: int, longest: float) -> None:
    """The head and the longest interval at sizes a server meets (base 1 s)."""
    cadence = plan_cadence(budget, n, 1.0)
    assert (cadence.head, cadence.max_interval_s(n)) == (head, longest)


def test_plan_refuses_a_non_positive_budget() -> None:
    """A budget of zero frames per second is a configuration error, not a silent stall."""
    with pytest.raises(ValueError, match="positive"):
        plan_cadence(0.0, 10, 1.0)


@given(
    budget=budgets,
    counts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=8),
    base=bases,
)
def test_shares_fit_the_budget_and_the_need(budget: float, counts: list[int], base: float) -> None:
    """Event shares add up to at most the budget, none exceeds its event's need, and a share
    below its need is at least every other event's share (max-min fair)."""
    shares = share_budget(budget, counts, base)
    assert math.fsum(shares) <= budget * (1 + 1e-9)
    for share, count in zip(shares, counts, strict=True):
        assert 0 <= share <= count / base * (1 + 1e-12)
        if share < count / base * (1 - 1e-9):
            assert all(share >= other * (1 - 1e-9) for other in shares)


def test_small_event_keeps_full_cadence_next_to_a_large_one() -> None:
    """Ten clients of one event all keep the base interval; the large event takes the rest."""
    small, large = share_budget(1_000.0, [10, 18_000], 1.0)
    assert small == 10.0
    assert large == 990.0
