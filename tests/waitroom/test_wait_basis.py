"""What a client is told of its wait: never a made-up number, never above what the caps allow."""

from __future__ import annotations

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
    worst_wait_s,
)
from waitroom.records import EventState

pytestmark = pytest.mark.once

OPEN = SaleOutlook(EventState.OPEN, hold_s=120.0, max_active=500, rate_per_min=0)


def _estimator(outlook: SaleOutlook = OPEN) -> OutflowEstimator:
    prior = admission_prior(outlook.max_active, outlook.hold_s, outlook.rate_per_min)
    return OutflowEstimator(prior_rate=prior)


def test_an_idle_line_measures_nothing_and_the_first_joiner_gets_a_real_estimate() -> None:
    """Seconds with nobody in line (the serving counter still) are not a stalled line: the
    first client to join afterwards is told an estimate from the caps, not a day."""
    est = _estimator()
    for t in range(30):  # the hub's ticks over 30 s of an empty line: windows do not count
        est.observe(0, float(t), counting=False)
    wait = estimate_wait(est, 1, OPEN)
    assert wait.basis is WaitBasis.CAPS
    assert wait.eta_s is not None and wait.eta_s <= worst_wait_s(1, OPEN) <= 120.0


def test_an_idle_line_counted_as_measured_would_stall() -> None:
    """The same 30 s counted as measured windows show outflow 0: no number, never a day."""
    est = _estimator()
    for t in range(30):
        est.observe(0, float(t))
    wait = estimate_wait(est, 1, OPEN)
    assert wait.basis is WaitBasis.STALLED
    assert wait.eta_s is None
    assert wait.high_s == 120.0  # the longest the caps allow: one hold time


def test_a_first_quiet_second_is_not_a_stall() -> None:
    """At 6 admissions a minute most 1 s windows see nobody leave: the estimate stays on the
    caps until someone does, then follows the measurement; no window flips it to stalled."""
    capped = SaleOutlook(EventState.OPEN, hold_s=120.0, max_active=500, rate_per_min=6)
    est = _estimator(capped)
    bases = set()
    for t in range(60):
        est.observe(t // 10, float(t))
        bases.add(estimate_wait(est, 5, capped).basis)
    assert bases == {WaitBasis.CAPS, WaitBasis.MEASURED}


def test_idle_windows_keep_the_measured_rate() -> None:
    """A busy line measures 10/s; an idle spell leaves that measurement as it was."""
    est = _estimator()
    for t in range(20):
        est.observe(10 * t, float(t))
    rate = est.rate
    assert rate == pytest.approx(10.0)
    for t in range(20, 60):
        est.observe(190, float(t), counting=False)
    assert est.rate == rate
    wait = estimate_wait(est, 50, OPEN)
    assert wait.basis is WaitBasis.MEASURED
    assert wait.eta_s == pytest.approx(5.0)


def test_a_paused_sale_has_no_number_and_does_not_teach_the_estimator_a_stall() -> None:
    """While paused: basis paused, no number; after the pause the measured rate is intact."""
    paused = SaleOutlook(EventState.PAUSED, 120.0, 500, 0)
    est = _estimator()
    for t in range(10):
        est.observe(4 * t, float(t))
    for t in range(10, 100):  # paused for 90 s: the serving counter stands still
        est.observe(36, float(t), counting=False)
        wait = estimate_wait(est, 7, paused)
        assert (wait.eta_s, wait.basis) == (None, WaitBasis.PAUSED)
    wait = estimate_wait(est, 8, OPEN)
    assert wait.basis is WaitBasis.MEASURED
    assert wait.eta_s == pytest.approx(2.0)


def test_a_stalled_checkout_says_so_and_bounds_the_wait_by_the_hold_time() -> None:
    """All 500 holds taken, people waiting, nobody has paid yet: outflow 0 while people
    waited. No number; the range's high end is the caps' worst case, which grows one hold
    time per 500 places."""
    est = _estimator()
    for t in range(9):
        est.observe(500, float(t))  # counting: the line was open and non-empty
    # 8 s without anyone leaving is not yet a stall: the caps' estimate stands
    assert estimate_wait(est, 1, OPEN).basis is WaitBasis.CAPS
    for t in range(9, 12):
        est.observe(500, float(t))
    for pos, high in [(1, 120.0), (500, 120.0), (501, 240.0), (2_000, 480.0)]:
        wait = estimate_wait(est, pos, OPEN)
        assert (wait.eta_s, wait.basis, wait.high_s) == (None, WaitBasis.STALLED, high)


@pytest.mark.parametrize("measured_rate", [0.2, 0.5, 1.0, 4.0])
def test_a_measured_line_that_stops_is_called_stalled(measured_rate: float) -> None:
    """One client left at ``measured_rate`` per second, then nobody while people waited: the
    line is stalled once three clients' worth of time at the rate it had (or 10 s) has
    passed. The estimate decaying during the stall must not push that moment away."""
    est = _estimator()
    est.observe(0, 0.0)
    est.observe(1, 1 / measured_rate)  # one client left: the rate is measured
    moved_at = 1 / measured_rate
    limit = max(10.0, 3 / measured_rate)
    t = moved_at
    while t < moved_at + limit - 1:
        t += 1.0
        est.observe(1, t)
    assert not est.stalled, t
    for _ in range(2):
        t += 1.0
        est.observe(1, t)
    assert est.stalled, (t, est.rate)
    assert estimate_wait(est, 1, OPEN).basis is WaitBasis.STALLED


def test_a_slowing_line_never_shows_more_than_the_caps_allow() -> None:
    """A line that moved, then slowed to a trickle: the smoothed rate falls, the estimate
    grows, but never above the longest wait the caps allow (here: one hold of 60 s); 10 s
    and more without anyone leaving is told as stalled."""
    outlook = SaleOutlook(EventState.OPEN, hold_s=60.0, max_active=100, rate_per_min=0)
    est = _estimator(outlook)
    for t in range(10):
        est.observe(100 * t, float(t))
    stalls = set()
    for t in range(10, 200):
        est.observe(900 + (t - 10) // 50, float(t))  # one client every 50 s
        wait = estimate_wait(est, 80, outlook)
        if wait.eta_s is not None:
            assert wait.low_s <= wait.eta_s <= wait.high_s <= 60.0
        else:
            assert (wait.basis, wait.high_s) == (WaitBasis.STALLED, 60.0)
            stalls.add(t)
    assert 19 in stalls  # 10 s after the last of the fast line left
    assert 60 not in stalls  # somebody just left


@pytest.mark.parametrize("state", [EventState.SOLD_OUT, EventState.CLOSED])
def test_sold_out_and_closed_have_no_wait(state: EventState) -> None:
    """Nobody else will be admitted: no number, basis over."""
    est = _estimator()
    est.observe(0, 0.0)
    est.observe(100, 10.0)
    wait = estimate_wait(est, 3, SaleOutlook(state, 120.0, 500, 0))
    assert (wait.eta_s, wait.low_s, wait.high_s, wait.basis) == (None, 0.0, 0.0, WaitBasis.OVER)


def test_a_state_read_before_the_opening_does_not_hide_the_wait() -> None:
    """A client with a position has a place: the line has opened even if the state last read
    still said scheduled. Its wait is estimated as for an open sale."""
    wait = estimate_wait(_estimator(), 3, SaleOutlook(EventState.SCHEDULED, 120.0, 500, 0))
    assert wait.basis is WaitBasis.CAPS and wait.eta_s is not None


def test_the_rate_cap_bounds_the_worst_case() -> None:
    """With 60 admissions a minute and huge holds, 600 places take at most 600 s."""
    capped = SaleOutlook(EventState.OPEN, hold_s=1.0, max_active=10_000, rate_per_min=60)
    assert worst_wait_s(600, capped) == 600.0
    assert worst_wait_s(600, OPEN) == 240.0  # 500 per 120 s hold: two holds


@given(
    pos=st.integers(1, 10**7),
    hold_s=st.floats(1, 3600),
    max_active=st.integers(1, 100_000),
    rate_per_min=st.integers(0, 6_000_000),
    served=st.lists(st.integers(0, 1000), min_size=0, max_size=20),
    state=st.sampled_from(list(EventState)),
)
def test_no_estimate_is_above_the_worst_case(
    pos: int,
    hold_s: float,
    max_active: int,
    rate_per_min: int,
    served: list[int],
    state: EventState,
) -> None:
    """Whatever was measured: the estimate is a number only while open, and then at most the
    caps' worst case (and a day); low ≤ estimate ≤ high."""
    outlook = SaleOutlook(state, hold_s, max_active, rate_per_min)
    est = _estimator(outlook)
    serving = 0
    for t, step in enumerate(served):
        serving += step
        est.observe(serving, float(t))
    wait = estimate_wait(est, pos, outlook)
    if wait.eta_s is None:
        assert wait.basis is not WaitBasis.MEASURED and wait.basis is not WaitBasis.CAPS
        assert wait.high_s <= min(worst_wait_s(pos, outlook), MAX_ETA_S) + 0.05
    else:
        assert state in (EventState.OPEN, EventState.SCHEDULED)
        worst = min(worst_wait_s(pos, outlook), MAX_ETA_S)
        assert 0 <= wait.low_s <= wait.eta_s <= wait.high_s <= worst + 0.05
