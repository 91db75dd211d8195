"""The chaos run at small scale: workers SIGKILLed, Redis and PostgreSQL restarted, invariants kept."""

from __future__ import annotations

import pytest

from bench.chaos import ChaosPlan, run_chaos

# Once, on trio: every process under chaos (``booking serve``, the workers, Redis,
# PostgreSQL) is started by the plan with the default runtime, whichever pass this is;
# only the simulated buyers run in this process, and they are tried on both runtimes by
# the bench tests.
pytestmark = [pytest.mark.anyio, pytest.mark.once]


async def test_small_chaos_run_keeps_every_invariant() -> None:
    """300 buyers while a worker dies every 2 s and Redis and PostgreSQL restart once: a clean report."""
    plan = ChaosPlan(
        clients=300,
        rows=4,
        hold_seconds=2,
        arrival_s=6.0,
        workers=3,
        kill_every_s=2.0,
        redis_restart_at_s=3.0,
        postgres_restart_at_s=6.0,
        time_limit_s=120.0,
    )
    report = await run_chaos(plan, log=None)
    assert report.problems == [], report.summary()
    assert (report.redis_restarts, report.postgres_restarts) == (1, 1)
    assert report.worker_kills >= 3
    assert report.oversold == 0 and report.stuck_seats == 0
    assert report.confirmed_missing_in_postgres == 0
    assert report.clients_without_one_outcome == 0
    assert report.sale.outcomes["confirmed"] > 0
