"""Position, outflow estimate and update cadence: pure arithmetic."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from waitroom.eta import (
    MAX_ETA_S,
    OutflowEstimator,
    SaleOutlook,
    WaitBasis,
    admission_prior,
    estimate_wait,
    position,
    update_interval,
    wire_eta,
)
from waitroom.records import EventState

pytestmark = pytest.mark.once

counters = st.integers(min_value=0, max_value=10**12)


@pytest.mark.parametrize(
    ("seq", "serving", "expected"),
    [(10, 3, 7), (4, 3, 1), (3, 3, 0), (2, 5, 0), (1, 0, 1), (0, 0, 0)],
)
def test_position_examples(seq: int, serving: int, expected: int) -> None:
    """Position is seq minus serving, and 0 once the client has been reached."""
    assert position(seq, serving) == expected


@given(seq=counters, serving=counters)
def test_position_is_never_negative(seq: int, serving: int) -> None:
    """Position is seq - serving when ahead of the counter and never below zero."""
    pos = position(seq, serving)
    assert pos >= 0
    assert pos == (seq - serving if seq > serving else 0)


def test_prior_rate_until_two_observations() -> None:
    """Before any outflow is measured the estimator answers with the prior."""
    est = OutflowEstimator(prior_rate=4.0)
    assert est.rate == 4.0
    assert est.eta_s(20) == 5.0
    est.observe(100, t=10.0)
    assert est.rate == 4.0
    assert est.eta_s(20) == 5.0


def test_first_measurement_replaces_prior() -> None:
    """The first measured window sets the rate to its sample, not a blend with the prior."""
    est = OutflowEstimator(prior_rate=4.0)
    est.observe(100, t=10.0)
    est.observe(130, t=12.0)
    assert est.rate == pytest.approx(15.0)
    assert est.eta_s(30) == pytest.approx(2.0)


@pytest.mark.parametrize("dt", [0.0, 0.05, 0.1999])
def test_windows_shorter_than_a_fifth_of_a_second_are_ignored(dt: float) -> None:
    """A window < 0.2 s is neither measured nor moves the reference point."""
    est = OutflowEstimator(prior_rate=2.0)
    est.observe(0, t=100.0)
    est.observe(50, t=100.0 + dt)
    assert est.rate == 2.0
    est.observe(100, t=101.0)
    # measured from the first observation (100 in 1 s), not from the ignored one
    assert est.rate == pytest.approx(100.0)


def test_window_of_exactly_a_fifth_of_a_second_is_measured() -> None:
    """A 0.2 s window is long enough to measure a rate."""
    est = OutflowEstimator(prior_rate=2.0)
    est.observe(0, t=0.0)
    est.observe(3, t=0.2)
    assert est.rate == pytest.approx(15.0)


def test_backwards_counter_counts_as_no_outflow() -> None:
    """A serving counter that goes backwards is a sample of zero, never a negative rate."""
    est = OutflowEstimator(prior_rate=1.0)
    est.observe(0, t=0.0)
    est.observe(50, t=5.0)  # 10/s
    est.observe(40, t=10.0)  # one half-life of zero outflow
    assert est.rate == pytest.approx(5.0)


@given(
    rate=st.floats(min_value=0.5, max_value=2_000.0),
    dt=st.floats(min_value=0.2, max_value=5.0),
    start=st.integers(min_value=0, max_value=10**9),
)
def test_converges_to_a_constant_outflow(rate: float, dt: float, start: int) -> None:
    """Fed a steady outflow, the estimate sits within one client per window of the true rate."""
    est = OutflowEstimator(prior_rate=1.0)
    for i in range(200):
        t = i * dt
        est.observe(start + math.floor(rate * t), t)
    # each window's sample is off by less than one client / dt; the EWMA stays inside that band
    assert abs(est.rate - rate) <= 1 / dt + 1e-9 * rate
    assert est.eta_s(1000) == pytest.approx(1000 / est.rate)


@given(
    old=st.floats(min_value=1.0, max_value=1_000.0),
    new=st.floats(min_value=1.0, max_value=1_000.0),
)
def test_follows_a_change_of_outflow_with_the_half_life(old: float, new: float) -> None:
    """After a change of rate, the error halves every half-life (exact integer flows, 1 s ticks)."""
    old, new = float(round(old)), float(round(new))
    est = OutflowEstimator(prior_rate=1.0, half_life_s=5.0)
    serving = 0
    est.observe(serving, 0.0)
    for t in range(1, 11):
        serving += int(old)
        est.observe(serving, float(t))
    assert est.rate == pytest.approx(old)
    for t in range(11, 31):  # four half-lives at the new rate
        serving += int(new)
        est.observe(serving, float(t))
    expected = new + (old - new) * 0.5**4
    assert est.rate == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_stalled_line_decays_with_the_half_life() -> None:
    """When nobody leaves the line the rate halves per half-life and the eta doubles."""
    est = OutflowEstimator(prior_rate=1.0, half_life_s=5.0)
    est.observe(0, 0.0)
    est.observe(100, 10.0)  # 10/s
    assert est.eta_s(50) == pytest.approx(5.0)
    est.observe(100, 15.0)  # one half-life without outflow
    assert est.rate == pytest.approx(5.0)
    assert est.eta_s(50) == pytest.approx(10.0)
    for t in range(16, 26):  # two more half-lives in 1 s steps
        est.observe(100, float(t))
    assert est.rate == pytest.approx(1.25)
    assert est.eta_s(50) == pytest.approx(40.0)


@given(gaps=st.lists(st.floats(min_value=0.25, max_value=60.0), min_size=1, max_size=50))
def test_stalled_line_eta_only_grows(gaps: list[float]) -> None:
    """While the serving counter stands still, each observation lowers the rate and raises the eta."""
    est = OutflowEstimator(prior_rate=1_000.0, half_life_s=5.0)
    est.observe(0, 0.0)
    est.observe(20, 1.0)  # 20/s measured
    t, rate, eta = 1.0, est.rate, est.eta_s(10)
    for gap in gaps:
        t += gap
        est.observe(20, t)
        assert 0 <= est.rate < rate
        assert est.eta_s(10) > eta
        rate, eta = est.rate, est.eta_s(10)


@pytest.mark.parametrize(
    ("tick_s", "stall_s"),
    [(300.0, 300.0), (1.0, 7_200.0)],
    ids=["one-5-minute-window", "2-hours-of-1s-ticks"],
)
def test_long_stall_does_not_revert_to_the_prior(tick_s: float, stall_s: float) -> None:
    """A long stall keeps the eta at least as long as it was; it never snaps back to the prior."""
    est = OutflowEstimator(prior_rate=10.0, half_life_s=5.0)
    est.observe(0, 0.0)
    est.observe(100, 10.0)  # 10/s measured
    t = 10.0
    eta_before = est.eta_s(100)
    while t < 10.0 + stall_s:
        t += tick_s
        est.observe(100, t)
    assert est.rate < 10.0
    assert est.eta_s(100) > eta_before


def test_zero_prior_and_no_outflow_gives_infinite_eta() -> None:
    """With no rate at all the eta is infinite rather than a division error."""
    est = OutflowEstimator(prior_rate=0.0)
    assert est.eta_s(5) == math.inf


@pytest.mark.parametrize(
    ("eta", "expected"),
    [
        (0.0, 0.5),
        (2.0, 0.5),
        (5.0, 0.5),
        (12.0, 1.2),
        (30.0, 3.0),
        (50.0, 5.0),
        (51.0, 5.0),
        (10_000.0, 5.0),
        (math.inf, 5.0),
    ],
)
def test_update_interval_examples(eta: float, expected: float) -> None:
    """A tenth of the eta, clamped to base (0.5 s) .. 10 x base."""
    assert update_interval(eta, 0.5) == pytest.approx(expected)


@given(
    eta=st.floats(min_value=0.0, allow_nan=False, allow_infinity=True),
    base=st.floats(min_value=0.01, max_value=60.0),
)
def test_update_interval_bounds(eta: float, base: float) -> None:
    """The interval lies in [base, 10 * base] and equals eta / 10 whenever that is in range."""
    interval = update_interval(eta, base)
    assert base <= interval <= 10 * base
    if base <= eta / 10 <= 10 * base:
        assert interval == eta / 10
    elif eta / 10 < base:
        assert interval == base
    else:
        assert interval == 10 * base


def test_update_interval_max_factor() -> None:
    """max_factor sets the upper bound as a multiple of base."""
    assert update_interval(1_000.0, 1.0, max_factor=3.0) == 3.0
    assert update_interval(20.0, 1.0, max_factor=3.0) == 2.0


def test_a_stalled_line_is_told_as_stalled_not_as_a_day() -> None:
    """A line whose outflow measures 0 gives no number (``eta_s`` null, basis ``stalled``);
    ``wire_eta`` keeps any number finite and to a tenth of a second."""
    estimator = OutflowEstimator(prior_rate=10.0)
    estimator.observe(0, 0.0)
    estimator.observe(100, 10.0)
    estimator.observe(100, 400.0)  # nothing moved for 390 s: outflow measures 0
    assert estimator.eta_s(5) == float("inf")
    outlook = SaleOutlook(EventState.OPEN, hold_s=60.0, max_active=10, rate_per_min=0)
    wait = estimate_wait(estimator, 5, outlook)
    assert (wait.eta_s, wait.basis, wait.high_s) == (None, WaitBasis.STALLED, 60.0)
    frame = msgspec.json.encode({"eta_s": wait.eta_s})
    assert frame == b'{"eta_s":null}'
    assert wire_eta(float("inf")) == MAX_ETA_S
    assert wire_eta(12.345) == 12.3


def test_eta_range_is_a_factor_of_two_around_the_prior_until_measured() -> None:
    """Before any outflow is measured the range is half to twice the prior's estimate."""
    est = OutflowEstimator(prior_rate=4.0)
    assert est.eta_s(40) == 10.0
    assert est.eta_range_s(40) == (5.0, 20.0)


def test_eta_range_narrows_at_a_steady_outflow_and_widens_when_it_wobbles() -> None:
    """A steady outflow gives a tight range around the estimate; an uneven one a wider one."""
    steady = OutflowEstimator(prior_rate=1.0)
    wobbly = OutflowEstimator(prior_rate=1.0)
    served_steady = served_wobbly = 0
    for t in range(61):
        steady.observe(served_steady, float(t))
        wobbly.observe(served_wobbly, float(t))
        served_steady += 10
        served_wobbly += 2 if t % 2 else 18
    low, high = steady.eta_range_s(100)
    assert low <= steady.eta_s(100) <= high
    assert high - low < 0.5
    w_low, w_high = wobbly.eta_range_s(100)
    assert w_low < wobbly.eta_s(100) < w_high
    assert w_high - w_low > 5 * (high - low) + 1


def test_admission_prior_is_the_tighter_of_the_two_caps() -> None:
    """Checkout turnover bounds the prior outflow; a lower rate cap bounds it further."""
    assert admission_prior(100, 50.0, 0) == 2.0
    assert admission_prior(100, 50.0, 60) == 1.0
    assert admission_prior(100, 50.0, 600) == 2.0
