"""The baselines run at small scale and keep their own books straight."""

from __future__ import annotations

import pytest

from bench.baselines import lua_ceiling, rowlock_baseline
from storage.embedded import EmbeddedServers

pytestmark = [pytest.mark.once, pytest.mark.slow]


def test_lua_ceiling_admits_everyone_asked(servers: EmbeddedServers) -> None:
    """The hold script, called directly, admits the clients asked for from a longer line."""
    assert servers.redis_url is not None
    result = lua_ceiling(servers.redis_url, 600, 100, seats=1000, admit=300)
    assert result["admitted"] == 300 and result["script_calls"] == 3
    assert result["admissions_per_s"] > 0 and result["joins_per_s"] > 0


def test_rowlock_baseline_books_without_overselling(servers: EmbeddedServers) -> None:
    """The row-locking app sells each seat once and runs out cleanly."""
    assert servers.database_url is not None
    result = rowlock_baseline(servers.database_url, buyers=60, seats=50, concurrency=8)
    assert not result["oversold"]
    assert result["outcomes"]["error"] == 0
    assert result["outcomes"]["confirmed"] > 0 and result["outcomes"]["sold_out"] > 0
