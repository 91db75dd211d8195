"""take_tokens.lua: token buckets limiting joins per client id and per IP."""

from __future__ import annotations

import pytest

from storage.redis_store import BucketLimit, RedisStore, TokenRequest
from tests.storage.helpers import T0

pytestmark = [pytest.mark.anyio, pytest.mark.once, pytest.mark.cluster]

CLIENT = BucketLimit(rate_per_s=1.0, burst=3)
IP = BucketLimit(rate_per_s=10.0, burst=5)


def req(event_id: str, client: str, ip: str = "10.0.0.1") -> TokenRequest:
    """A join by ``client`` from ``ip``."""
    return TokenRequest(event_id, (("client", client), ("ip", ip)))


async def take(store: RedisStore, *requests: TokenRequest, now: int = T0) -> list[bool]:
    """One script call for ``requests``."""
    return await store.take_tokens(list(requests), [CLIENT, IP], now)


async def test_burst_then_refused(redis_store: RedisStore, event_id: str) -> None:
    """A client gets its burst of joins, then is refused until tokens refill."""
    got = await take(redis_store, *[req(event_id, "c1") for _ in range(5)])
    assert got == [True, True, True, False, False]


async def test_refill_follows_the_given_time(redis_store: RedisStore, event_id: str) -> None:
    """Tokens come back at the rate, by the now_ms passed in, never above the burst."""
    assert await take(redis_store, *[req(event_id, "c1")] * 3) == [True] * 3
    assert await take(redis_store, req(event_id, "c1"), now=T0 + 999) == [False]
    assert await take(redis_store, req(event_id, "c1"), now=T0 + 1_000) == [True]
    got = await take(redis_store, *[req(event_id, "c1")] * 4, now=T0 + 3_600_000)
    assert got == [True, True, True, False]


async def test_ip_bucket_limits_many_client_ids(redis_store: RedisStore, event_id: str) -> None:
    """Distinct client ids from one IP share its bucket; another IP is not affected."""
    got = await take(redis_store, *[req(event_id, f"c{i}") for i in range(7)])
    assert got == [True] * 5 + [False] * 2
    assert await take(redis_store, req(event_id, "c9", ip="10.0.0.2")) == [True]


async def test_refusal_takes_no_token_from_the_other_bucket(
    redis_store: RedisStore, event_id: str
) -> None:
    """A join refused by its IP's bucket leaves its client's tokens alone."""
    await take(redis_store, *[req(event_id, f"other{i}") for i in range(5)])
    assert await take(redis_store, req(event_id, "c1")) == [False]
    got = await take(redis_store, *[req(event_id, "c1", ip="10.9.9.9")] * 4)
    assert got == [True, True, True, False]


async def test_repeated_calls_keep_buckets_bounded(redis_store: RedisStore, event_id: str) -> None:
    """Running the same call again spends more tokens but never goes below zero or above burst."""
    ten = [req(event_id, "c1")] * 10
    assert await take(redis_store, *ten) == [True] * 3 + [False] * 7
    assert await take(redis_store, *ten) == [False] * 10
    assert await take(redis_store, *ten) == [False] * 10
    # Half a token a second later is still not a token; a full refill is exactly the burst.
    assert await take(redis_store, req(event_id, "c1"), now=T0 + 500) == [False]
    got = await take(redis_store, *[req(event_id, "c1")] * 4, now=T0 + 10_000)
    assert got == [True, True, True, False]


async def test_buckets_of_different_events_are_separate(
    redis_store: RedisStore, event_id: str
) -> None:
    """One batch may span events; each event has its own buckets."""
    other = event_id + "x"
    got = await take(redis_store, *[req(event_id, "c1")] * 4, *[req(other, "c1")] * 4)
    assert got == [True, True, True, False, True, True, True, False]
