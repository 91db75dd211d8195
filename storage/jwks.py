"""Signing keys published at JWKS URLs (an operator's site), fetched and cached.

PyJWT parses the key sets (``PyJWKSet``); its ``PyJWKClient`` is not used because it
fetches with blocking ``urllib`` (a thread per fetch here) and fetches again for every
unknown ``kid`` without a bound, which a stream of forged tokens would turn into a
flood against the operator's site. Here a set is fetched with httpx (both runtimes),
kept ``max_age_s``, fetched again at once for an unknown ``kid`` (a key rotated
mid-sale), but at most once per ``min_refetch_s`` per URL; concurrent lookups of one
URL share one fetch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import anyio
import httpx
import jwt

__all__ = ["JwksKeys", "JwksUnavailable"]

logger = logging.getLogger(__name__)


class JwksUnavailable(Exception):
    """The key set could not be fetched or read (and none is cached)."""


@dataclass
class _KeySet:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)  # kid -> key
    fetched_at: float = -math.inf  # anyio.current_time() of the last fetch (tried)
    lock: anyio.Lock = field(default_factory=anyio.Lock)  # one fetch at a time


class JwksKeys:
    """Keys by JWKS URL and ``kid``."""

    def __init__(
        self, *, max_age_s: float = 300.0, min_refetch_s: float = 1.0, timeout_s: float = 5.0
    ) -> None:
        self._max_age_s = max_age_s  # a cached set is fetched again after this
        self._min_refetch_s = min_refetch_s  # unknown kids fetch at most this often per URL
        self._timeout_s = timeout_s  # one fetch's bound
        self._sets: dict[str, _KeySet] = {}  # url -> its keys
        self.fetches = 0  # fetches made, for tests and logs

    async def signing_key(self, url: str, kid: str) -> jwt.PyJWK | None:
        """The key ``kid`` of ``url``; None if the (fresh) set has none."""
        ks = self._sets.setdefault(url, _KeySet())
        now = anyio.current_time()
        key = ks.keys.get(kid)
        if key is not None and now - ks.fetched_at < self._max_age_s:
            return key
        async with ks.lock:
            key = ks.keys.get(kid)
            fresh = anyio.current_time() - ks.fetched_at
            if key is not None and fresh < self._max_age_s:
                return key  # another lookup fetched it meanwhile
            if fresh < self._min_refetch_s:
                return key  # fetched a moment ago: an unknown kid stays unknown
            try:
                ks.keys = await self._fetch(url)
            except JwksUnavailable:
                if not ks.keys:
                    raise
                logger.warning("jwks: could not refresh %s; keeping the cached keys", url)
            finally:
                ks.fetched_at = anyio.current_time()
            return ks.keys.get(kid)

    async def _fetch(self, url: str) -> dict[str, jwt.PyJWK]:
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                answer = await client.get(url, headers={"Accept": "application/json"})
            answer.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(answer.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            raise JwksUnavailable(f"JWKS at {url}: {exc}") from exc
        return {k.key_id: k for k in key_set.keys if k.key_id}
