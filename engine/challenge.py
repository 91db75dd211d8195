"""Proof of work at join: a signed ALTCHA challenge the buyer's device solves first.

The server issues an ALTCHA v2 challenge (``altcha``) in deterministic mode: it picks
the counter itself, at random in ``[difficulty / 2, difficulty]``, and signs the key it
derives (SHA-256 of salt, nonce and counter), so a solver tries ``3/4 * difficulty``
hashes on average while the check is two HMACs (no key derivation). The challenge names
its event and expires after ``CHALLENGE_TTL_S``; a solution is used once (remembered in
Redis until it expires, in the event's hash tag; the joins checked at the same time share
one round trip, ``used``, a batcher to run beside the line's). The difficulty is the event's
``challenge_difficulty`` until an admin changes it live (``set_difficulty``); 0: no
challenge. Joins read it through a cache of ``DIFFICULTY_CACHE_S``.
"""

from __future__ import annotations

import secrets
from typing import Any

import altcha
import anyio

from engine.catalog import EventCatalog
from engine.errors import ChallengeRefused
from plumbing.batcher import Batcher
from plumbing.clock import Clock
from storage.redis_store import RedisStore, UsedChallenge

__all__ = ["ALGORITHM", "CHALLENGE_TTL_S", "DIFFICULTY_CACHE_S", "JoinChallenges"]

#: The key derivation of the challenges: one SHA-256 per counter tried (WebCrypto has it).
ALGORITHM = "SHA-256"
#: How long a challenge may be solved and used, seconds.
CHALLENGE_TTL_S = 300
#: How long a join process trusts the difficulty it read, seconds.
DIFFICULTY_CACHE_S = 1.0


class JoinChallenges:
    """Issues challenges and checks their solutions."""

    def __init__(
        self, catalog: EventCatalog, redis: RedisStore, clock: Clock, *, key: bytes
    ) -> None:
        self._catalog = catalog  # each event's initial difficulty
        self._redis = redis  # the live difficulty, used solutions
        self._clock = clock  # expiry
        self._sign_key = key  # signs the challenge's parameters
        self._key_key = bytes(b ^ 0x5C for b in key)  # signs the derived key (fast check)
        self._cached: dict[str, tuple[float, int]] = {}  # event -> (read at, difficulty)
        self._reading: dict[str, anyio.Event] = {}  # event -> its read under way, set when done
        #: Solutions marked used: one round trip per batch of concurrent joins (run it).
        self.used: Batcher[UsedChallenge, bool] = Batcher(
            redis.use_challenges, name="use_challenges"
        )

    async def difficulty(self, event_id: str) -> int:
        """The counter range of the event's challenges now (0: joins need none).

        One read at a time per event: the joins that find the cached value stale together
        (thousands at a sale's opening) wait for that read instead of each opening its
        own Redis connection for the same value."""
        while True:
            cached = self._cached.get(event_id)
            if cached is not None and anyio.current_time() - cached[0] < DIFFICULTY_CACHE_S:
                return cached[1]
            reading = self._reading.get(event_id)
            if reading is None:
                break
            await reading.wait()  # then the value it read, or (it failed) a read of our own
        done = self._reading[event_id] = anyio.Event()
        try:
            live = await self._redis.challenge_difficulty(event_id)
            if live is None:
                live = (await self._catalog.get(event_id)).challenge_difficulty
            self._cached[event_id] = (anyio.current_time(), live)
            return live
        finally:
            del self._reading[event_id]
            done.set()

    async def set_difficulty(self, event_id: str, difficulty: int) -> None:
        """Change the event's difficulty for every process (each sees it within a second)."""
        await self._catalog.get(event_id)  # NotFound for an unknown event
        await self._redis.set_challenge_difficulty(event_id, difficulty)
        self._cached.pop(event_id, None)

    async def issue(self, event_id: str) -> tuple[dict[str, Any], int]:
        """A new challenge of the event (altcha's JSON form) and its difficulty (0: none
        needed, but a challenge is issued all the same)."""
        difficulty = await self.difficulty(event_id)
        top = max(difficulty, 2)
        challenge = altcha.create_challenge(
            ALGORITHM,
            1,
            counter=top // 2 + secrets.randbelow(top - top // 2 + 1),
            expires_at=self._clock.now_ms() // 1000 + CHALLENGE_TTL_S,
            data={"event": event_id},
            hmac_secret=self._sign_key,
            hmac_key_secret=self._key_key,
        )
        return challenge.to_dict(), difficulty

    async def check(self, event_id: str, payload: str | None) -> None:
        """Accept a join's solution (or none, when the event needs none); ChallengeRefused."""
        if await self.difficulty(event_id) == 0:
            return
        if not payload:
            raise ChallengeRefused("challenge_required", "solve a challenge and join with it")
        try:
            solved = altcha.Payload.from_base64(payload)
        except Exception as exc:  # altcha raises whatever its parsing meets
            raise ChallengeRefused("challenge_invalid", "the solution is not readable") from exc
        result = altcha.verify_solution(solved, self._sign_key, hmac_key_secret=self._key_key)
        if result.expired:
            raise ChallengeRefused("challenge_expired", "the challenge expired; get a new one")
        if not result.verified:
            raise ChallengeRefused("challenge_invalid", "the solution does not solve a challenge")
        parameters = solved.challenge.parameters
        if (parameters.data or {}).get("event") != event_id:
            raise ChallengeRefused("challenge_invalid", "the challenge is for another event")
        if not parameters.expires_at:
            raise ChallengeRefused("challenge_invalid", "the challenge has no expiry")
        expires_ms = parameters.expires_at * 1000
        if not await self.used.submit(UsedChallenge(event_id, parameters.nonce, expires_ms)):
            raise ChallengeRefused("challenge_replayed", "this solution was used already")
