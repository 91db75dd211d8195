"""Settings from the environment: the position frame budget."""

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
