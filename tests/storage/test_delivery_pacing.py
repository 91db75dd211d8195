"""Admission paced by delivery: admit_next.lua keeps the prompts the servers have not
written yet (their reported backlogs, plus admissions some server has not read) under
the bound it is given, and a server that stops reporting stops counting."""

from __future__ import annotations

import anyio
import pytest

from storage.redis_store import RedisStore
from tests.storage.helpers import T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.cluster]

#: Long enough never to lapse during a test.
LONG_TTL_MS = 600_000
SEATS = (("A", 1_000, "0" * 20 + "|"),)


@pytest.mark.anyio
async def test_admission_stops_at_the_bound_and_resumes_as_the_backlog_drains(
    redis_store: RedisStore, event_id: str
) -> None:
    ev = await new_event(redis_store, event_id, SEATS)
    await ev.join_many([(f"c{i}", 1, "") for i in range(20)])
    # No server reports for this event: nobody to pace by.
    first = await redis_store.admit(event_id, T0, 2, pace=5)
    assert (first.admitted, first.reason, first.backlog) == (2, "budget", 0)
    # Two servers have read everything so far and have nothing left to write.
    for server in ("s1", "s2"):
        await redis_store.report_backlog(event_id, server, 0, first.notify_id, LONG_TTL_MS)
    burst = await redis_store.admit(event_id, T0, 100, pace=5)
    assert (burst.admitted, burst.reason) == (5, "paced")
    # Not read by the servers yet, the five count as undelivered: nobody more.
    held = await redis_store.admit(event_id, T0, 100, pace=5)
    assert (held.admitted, held.reason, held.backlog) == (0, "paced", 5)
    # One server read them (all five are its clients') and wrote none; the other has not
    # read them yet: they count twice.
    await redis_store.report_backlog(event_id, "s1", 5, burst.notify_id, LONG_TTL_MS)
    twice = await redis_store.admit(event_id, T0, 100, pace=5)
    assert (twice.admitted, twice.reason, twice.backlog) == (0, "paced", 10)
    await redis_store.report_backlog(event_id, "s2", 0, burst.notify_id, LONG_TTL_MS)
    still = await redis_store.admit(event_id, T0, 100, pace=5)
    assert (still.admitted, still.reason, still.backlog) == (0, "paced", 5)
    # Three written: three more.
    await redis_store.report_backlog(event_id, "s1", 2, burst.notify_id, LONG_TTL_MS)
    some = await redis_store.admit(event_id, T0, 100, pace=5)
    assert (some.admitted, some.reason, some.backlog) == (3, "paced", 2)
    # The first server read and wrote everything; the second is behind by those three.
    await redis_store.report_backlog(event_id, "s1", 0, some.notify_id, LONG_TTL_MS)
    behind = await redis_store.admit(event_id, T0, 100, pace=5)
    assert (behind.admitted, behind.reason, behind.backlog) == (2, "paced", 3)
    # Both caught up and drained: the bound again.
    for server in ("s1", "s2"):
        await redis_store.report_backlog(event_id, server, 0, behind.notify_id, LONG_TTL_MS)
    drained = await redis_store.admit(event_id, T0, 100, pace=5)
    assert (drained.admitted, drained.reason, drained.backlog) == (5, "paced", 0)
    # Unpaced (no bound): the rest at once.
    rest = await redis_store.admit(event_id, T0, 100)
    assert (rest.admitted, rest.reason) == (3, "empty")
    await ev.check()


@pytest.mark.anyio
async def test_a_silent_servers_backlog_stops_counting_when_its_report_lapses(
    redis_store: RedisStore, event_id: str
) -> None:
    ev = await new_event(redis_store, event_id, SEATS)
    await ev.join_many([(f"c{i}", 1, "") for i in range(10)])
    start = await redis_store.admit(event_id, T0, 1)
    await redis_store.report_backlog(event_id, "alive", 0, start.notify_id, LONG_TTL_MS)
    await redis_store.report_backlog(event_id, "dying", 4, start.notify_id, 300)
    blocked = await redis_store.admit(event_id, T0, 100, pace=4)
    assert (blocked.admitted, blocked.reason, blocked.backlog) == (0, "paced", 4)
    await anyio.sleep(0.5)  # past the dying server's last report's lifetime (Redis's clock)
    after = await redis_store.admit(event_id, T0, 100, pace=4)
    assert (after.admitted, after.reason, after.backlog) == (4, "paced", 0)
    await ev.check()
