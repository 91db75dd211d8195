"""use_challenges.lua: solved join challenges remembered once, a batch in one round trip."""

from __future__ import annotations

import uuid

import pytest

from storage.keys import event_keys
from storage.metrics import ROUND_TRIPS
from storage.redis_store import RedisStore, UsedChallenge
from tests.storage.helpers import T0

pytestmark = [pytest.mark.anyio, pytest.mark.once, pytest.mark.cluster]


def _trips() -> float:
    value: float = ROUND_TRIPS.labels("redis", "use_challenges")._value.get()
    return value


async def test_a_batch_marks_each_solution_once_in_one_round_trip(
    redis_store: RedisStore, event_id: str
) -> None:
    """Solutions of two events in one call: each is new once, a repeat in the same batch
    or a later one is refused, and the call is one round trip (one per node on a
    cluster: each event's keys stay in its hash tag)."""
    other = "t" + uuid.uuid4().hex[:12]
    expires = T0 + 10**12  # far ahead: the markers outlive the test
    batch = [
        UsedChallenge(event_id, "n1", expires),
        UsedChallenge(other, "n1", expires),  # another event's nonce space
        UsedChallenge(event_id, "n2", expires),
        UsedChallenge(event_id, "n1", expires),  # the same solution twice in one batch
    ]
    before = _trips()
    assert await redis_store.use_challenges(batch) == [True, True, True, False]
    assert _trips() - before == redis_store._scripts.nodes(
        [event_keys(event_id).used_challenge("n1"), event_keys(other).used_challenge("n1")]
    )
    again = await redis_store.use_challenges([UsedChallenge(event_id, "n2", expires)])
    assert again == [False]


async def test_a_marker_lives_until_its_challenge_expires(
    redis_store: RedisStore, event_id: str
) -> None:
    """The marker carries its challenge's expiry (PXAT): one whose challenge has expired
    is gone at once, so markers do not pile up (the join refuses an expired challenge
    before it gets here)."""
    gone = [UsedChallenge(event_id, "n9", T0)]  # T0 is in the past
    assert await redis_store.use_challenges(gone) == [True]
    assert await redis_store.use_challenges(gone) == [True]
