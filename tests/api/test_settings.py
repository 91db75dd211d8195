"""Settings from the environment: the position frame budget, the start-up wait."""

from __future__ import annotations

import pytest

from api.settings import Settings

pytestmark = pytest.mark.once


def test_position_budget_is_read_from_the_environment() -> None:
    """BOOKING_POSITION_FRAMES_PER_S sets the budget, as a number; unset keeps the default."""
    assert Settings.from_env({}).position_frames_per_s == 1_000.0
    settings = Settings.from_env({"BOOKING_POSITION_FRAMES_PER_S": "250"})
    assert settings.position_frames_per_s == 250.0


@pytest.mark.parametrize("budget", ["0", "-5", "nan"])
def test_a_budget_that_sends_nothing_is_refused(budget: str) -> None:
    """A budget of no frames per second would leave clients without positions: refused at start."""
    with pytest.raises(ValueError, match="position_frames_per_s"):
        Settings.from_env({"BOOKING_POSITION_FRAMES_PER_S": budget})


def test_startup_wait_is_read_from_the_environment() -> None:
    """BOOKING_STARTUP_WAIT_S sets how long start-up waits for the stores, as a number; 0 is allowed."""
    assert Settings.from_env({}).startup_wait_s == 60.0
    assert Settings.from_env({"BOOKING_STARTUP_WAIT_S": "2.5"}).startup_wait_s == 2.5
    assert Settings.from_env({"BOOKING_STARTUP_WAIT_S": "0"}).startup_wait_s == 0.0


@pytest.mark.parametrize("wait", ["-1", "nan"])
def test_a_negative_startup_wait_is_refused(wait: str) -> None:
    """A start-up wait below zero (or not a number) is refused at start."""
    with pytest.raises(ValueError, match="startup_wait_s"):
        Settings.from_env({"BOOKING_STARTUP_WAIT_S": wait})
