"""The sale's progress: counted like the summary, rates over a window, plain lines off a
terminal, log records above the live display."""

from __future__ import annotations

import io
import logging

import pytest

from bench.client import Behaviour, ClientResult
from bench.display import SaleDisplay, SaleFrame, plural
from bench.tally import RateWindow, Tally, tally_of

pytestmark = pytest.mark.once


def _buyers() -> list[ClientResult]:
    return [
        ClientResult("connecting", Behaviour.PAY, 1),
        ClientResult("failed", Behaviour.PAY, 1, joined_at=1.0, outcome="error"),
        ClientResult("waiting", Behaviour.PAY, 1, joined_at=1.0, ticket=1),
        ClientResult("holding", Behaviour.PAY, 2, joined_at=1.0, ticket=2, prompted_at=2.0),
        ClientResult(
            "paid", Behaviour.PAY, 3, joined_at=1.0, ticket=3, prompted_at=2.0, outcome="confirmed",
            seats=3,
        ),
        ClientResult(
            "expired", Behaviour.ABANDON, 1, joined_at=1.0, ticket=4, prompted_at=2.0,
            outcome="expired",
        ),
        ClientResult("sold out", Behaviour.PAY, 1, joined_at=1.0, ticket=5, outcome="sold_out"),
        ClientResult("left", Behaviour.LEAVE, 1, joined_at=1.0, ticket=6, outcome="left"),
    ]  # fmt: skip


def test_tally_counts_each_buyer_where_they_are() -> None:
    """Waiting, holding and decided buyers are told apart; seats are those of the paid."""
    t = tally_of(_buyers())
    assert t == Tally(
        connected=7, joined=6, never_joined=1, waiting=1, holding=1, admitted=3, confirmed=1,
        expired=1, sold_out=1, left=1, errors=1, seats_sold=3,
    )  # fmt: skip
    assert t.decided == 5
    assert t + t == tally_of(_buyers() * 2)


def test_rates_cover_the_window_not_the_run() -> None:
    """A burst of admissions early and none since reads 0/s, not the run's average."""
    rates = RateWindow(window_s=5.0)
    rates.add(0.0, Tally())
    rates.add(1.0, Tally(admitted=100))
    assert rates.per_s("admitted") == pytest.approx(100.0)
    for second in range(2, 20):
        rates.add(float(second), Tally(admitted=100, confirmed=second))
    assert rates.per_s("admitted") == 0.0
    assert rates.per_s("confirmed") == pytest.approx(1.0)


def _frame(elapsed_s: float, joined: int) -> SaleFrame:
    return SaleFrame(elapsed_s, 10, 6, Tally(joined=joined, waiting=joined))


def test_plain_lines_every_few_seconds_without_carriage_returns() -> None:
    """Off a terminal: a line at the start, one every ``every_s``, and the final frame."""
    out = io.StringIO()
    with SaleDisplay(live=False, file=out, every_s=5.0) as display:
        display.note("Waiting-room page: http://127.0.0.1:1/events/e")
        for step in range(1, 25):
            display.show(_frame(step * 0.5, min(step, 10)))
        display.show(_frame(12.2, 10), final=True)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "Waiting-room page: http://127.0.0.1:1/events/e"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "sale    0.5 s",
        "sale    5.5 s",
        "sale   10.5 s",
        "sale   12.2 s",
    ]
    assert "joined 10/10" in lines[-1]


def test_live_display_prints_log_records_above_it() -> None:
    """On a terminal, a log record written during the sale goes through the live display
    (above it), and the handler gets its stream back afterwards."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with SaleDisplay(live=True, file=out) as display:
            display.show(_frame(0.5, 1))
            assert handler.stream is not out
            logging.getLogger("booking.test").warning("a worker restarted")
            display.show(_frame(1.0, 10), final=True)
        assert handler.stream is out
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    assert text.index("a worker restarted") < text.rindex("10 / 10")
    assert "done" in text


def test_plural() -> None:
    """One process, two processes."""
    assert plural(1, "bench process", "bench processes") == "1 bench process"
    assert plural(2, "bench process", "bench processes") == "2 bench processes"
    assert plural(0, "seat") == "0 seats"
