"""A server's delivery backlog of one event: a prompt counts from queued until written,
its connection gone, or its hold run out, and never stops counting twice."""

from __future__ import annotations

import pytest

from realtime.delivery import DeliveryBacklog

pytestmark = pytest.mark.once


def test_a_prompt_counts_until_written_once() -> None:
    backlog = DeliveryBacklog()
    a, b = object(), object()
    written_a = backlog.queued(a, 10_000)
    backlog.queued(b, 10_000)
    assert backlog.count == 2
    written_a()
    written_a()  # a second call changes nothing
    assert backlog.count == 1


def test_a_gone_connection_stops_counting_and_a_late_write_changes_nothing() -> None:
    backlog = DeliveryBacklog()
    gone, other = object(), object()
    written = backlog.queued(gone, 10_000)
    backlog.queued(gone, 10_000)
    backlog.queued(other, 10_000)
    backlog.forget(gone)
    assert backlog.count == 1
    written()  # the write that was under way when the connection went
    assert backlog.count == 1


def test_a_prompt_whose_hold_ran_out_stops_counting() -> None:
    """A client that stops reading holds admission back no longer than its hold."""
    backlog = DeliveryBacklog()
    stuck, reading, later = object(), object(), object()
    backlog.queued(stuck, 5_000)
    written = backlog.queued(reading, 5_000)
    backlog.queued(later, 9_000)
    written()
    backlog.lapse(4_999)
    assert backlog.count == 2
    backlog.lapse(5_000)
    assert backlog.count == 1  # the stuck one lapsed, the one still due later counts
    backlog.forget(stuck)  # its connection goes afterwards: counted once only
    assert backlog.count == 1
    backlog.lapse(9_000)
    assert backlog.count == 0
