"""Token buckets in front of the edge's routes (payment, release, booking reads, admin).

The same Redis buckets as joins (``take_tokens.lua``): shared by every process
serving the API, so N processes do not allow N times the rate. One bucket per route
and client address, and one per route and identity (the hold, or the admin key);
a request takes a token from each of its buckets or from none.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from plumbing.clock import Clock
from storage.redis_store import BucketLimit, RedisStore, TokenRequest

__all__ = ["RouteLimiter", "RouteLimits", "identity", "retry_after_s"]


@dataclass(frozen=True, slots=True)
class RouteLimits:
    """Each route's buckets: per client address, per hold, per admin key."""

    per_ip: BucketLimit
    per_hold: BucketLimit
    per_admin: BucketLimit


def retry_after_s(*limits: BucketLimit) -> int:
    """Whole seconds after which a refused request may pass: one token's refill in the
    slowest of its buckets (an upper bound; at least 1)."""
    return max(1, *(math.ceil(1 / limit.rate_per_s) for limit in limits))


def identity(secret: str) -> str:
    """A bucket name for a credential that does not store the credential."""
    return hashlib.sha256(secret.encode()).hexdigest()[:24]


class RouteLimiter:
    """Decides whether a request to a route may go ahead; one Redis round trip."""

    def __init__(self, redis: RedisStore, clock: Clock, limits: RouteLimits) -> None:
        self._redis = redis  # the buckets live in Redis
        self._clock = clock  # refill times
        self.limits = limits  # the buckets' rates and bursts

    async def take(
        self, route: str, *, ip: str | None = None, hold: str | None = None, admin: str = ""
    ) -> int:
        """Take a token from each bucket of a request to ``route``: its client address's
        (unless None: exempt), its hold's, its admin key's (named by ``identity``).

        0 when the request may go ahead, else the seconds to wait (nothing was taken).
        """
        buckets: list[tuple[str, str, BucketLimit]] = []
        if ip is not None:
            buckets.append(("ip", ip or "-", self.limits.per_ip))
        if hold is not None:
            buckets.append(("hold", hold, self.limits.per_hold))
        if admin:
            buckets.append(("admin", admin, self.limits.per_admin))
        if not buckets:
            return 0
        request = TokenRequest(route, tuple((kind, name) for kind, name, _ in buckets))
        limits = [limit for _, _, limit in buckets]
        (allowed,) = await self._redis.take_tokens(
            [request], limits, self._clock.now_ms(), edge=True
        )
        return 0 if allowed else retry_after_s(*limits)
