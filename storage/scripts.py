"""Running the Lua scripts: loading, key layouts, one pipelined round trip per batch, NOSCRIPT.

This is the one module that knows how a script call reaches Redis: every script
is loaded once and called by SHA (``EVALSHA``), reloaded when Redis answers
NOSCRIPT (after a restart or ``SCRIPT FLUSH``), and a batch of calls (one per
event) goes out as one pipeline. The typed methods of ``redis_store.py`` say
*which* script to run with which arguments; this module says *how*. A cluster
client changes this module: loading on every primary, grouping calls per node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, Protocol, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from storage.bridge import Bridge
from storage.errors import StorageError, StorageUnavailable
from storage.keys import event_keys
from storage.metrics import BATCH_SIZE, ROUND_TRIPS

__all__ = ["SCRIPT_NAMES", "ScriptCall", "ScriptRunner"]

T = TypeVar("T")
R = TypeVar("R")

#: Scripts under ``storage/lua`` (each is run with ``_prelude.lua`` in front).
SCRIPT_NAMES = (
    "init_event",
    "join_queue",
    "admit_next",
    "expire_holds",
    "begin_payment",
    "abort_payment",
    "release_hold",
    "confirm_paid",
    "set_event_state",
    "reconcile_bookings",
    "return_seats",
    "take_tokens",
    "set_admission",
    "mark_presence",
)

#: Scripts that do not work on an event's key layout, loaded without the prelude.
_STANDALONE = frozenset({"take_tokens"})

#: One script call: the script's name, its KEYS and its ARGV.
ScriptCall = tuple[str, list[str], list[Any]]


def _load_script_sources() -> dict[str, str]:
    lua = resources.files("storage") / "lua"
    prelude = (lua / "_prelude.lua").read_text()
    return {
        name: (lua / f"{name}.lua").read_text()
        if name in _STANDALONE
        else prelude + "\n" + (lua / f"{name}.lua").read_text()
        for name in SCRIPT_NAMES
    }


_SOURCES = _load_script_sources()


class _EventItem(Protocol):
    @property
    def event_id(self) -> str: ...


class ScriptRunner:
    """Round trips to Redis: plain commands and batches of script calls."""

    def __init__(self, client: aioredis.Redis, bridge: Bridge) -> None:
        self._client = client  # the redis.asyncio client, used only on the drivers' loop
        self._bridge = bridge  # crosses into the drivers' loop
        self._shas: dict[str, str] = {}  # script name -> SHA1 once loaded
        self._sections: dict[str, list[str]] = {}  # event id -> its section ids, immutable

    async def call(self, op: str, fn: Callable[[], Awaitable[T]], *, trips: int = 1) -> T:
        """One round trip: ``fn()`` on the drivers' loop, counted under ``op``; driver
        errors become StorageUnavailable (unreachable) or StorageError."""
        ROUND_TRIPS.labels("redis", op).inc(trips)
        try:
            return await self._bridge.call(fn)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise StorageUnavailable(f"Redis unreachable during {op}: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise StorageError(f"Redis error during {op}: {exc}") from exc

    async def load(self) -> None:
        """Load every script into Redis (again after a restart or SCRIPT FLUSH)."""

        async def load() -> dict[str, str]:
            pipe = self._client.pipeline(transaction=False)
            for name in SCRIPT_NAMES:
                pipe.script_load(_SOURCES[name])
            shas = await pipe.execute()
            return {
                n: s.decode() if isinstance(s, bytes) else s
                for n, s in zip(SCRIPT_NAMES, shas, strict=True)
            }

        self._shas = await self.call("script_load", load)

    async def sections(self, event_id: str) -> list[str]:
        """The section ids of an event (read once, then cached: they never change)."""
        sections = self._sections.get(event_id)
        if sections is None:

            async def fetch() -> Any:
                return await self._client.hget(event_keys(event_id).meta, "sections")

            raw = await self.call("sections", fetch)
            sections = raw.decode().split(",") if raw else []
            if sections:
                self._sections[event_id] = sections
        return sections

    async def keys(self, event_id: str) -> list[str]:
        """The KEYS every event script takes, in order."""
        return self.layout(event_id, await self.sections(event_id))

    @staticmethod
    def layout(event_id: str, sections: Sequence[str]) -> list[str]:
        """The KEYS of an event with these sections: its fixed keys, then a seat map each."""
        k = event_keys(event_id)
        fixed = [k.meta, k.stats, k.queue, k.tickets, k.clients, k.expiry, k.notify]
        return fixed + [k.seat_map(s) for s in sections]

    async def run(self, op: str, calls: list[ScriptCall]) -> list[bytes]:
        """Run script calls in one pipelined round trip; reload scripts once on NOSCRIPT."""
        BATCH_SIZE.labels(op).observe(len(calls))

        async def run() -> Any:
            pipe = self._client.pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.evalsha(self._shas[name], len(keys), *keys, *args)
            return await pipe.execute()

        try:
            return await self.call(op, run)
        except StorageError as exc:
            if not isinstance(exc.__cause__, redis_errors.NoScriptError):
                raise
        await self.load()
        return await self.call(op, run)

    async def per_event(
        self,
        op: str,
        now: int,
        head: list[Any] | Callable[[], list[Any]],
        items: Sequence[_EventItem],
        fields: Callable[[Any], list[Any]],
        decoder: msgspec.json.Decoder[list[R]],
    ) -> list[R]:
        """Script ``op`` once per event over ``items``, all in one round trip; results in
        ``items`` order.

        Each call's ARGV is ``now``, then ``head`` (or a fresh ``head()`` per call), then
        ``fields(item)`` of each of its event's items; it answers a JSON list, one
        result per item.
        """
        by_event: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            by_event[item.event_id].append(i)
        calls: list[ScriptCall] = []
        for event_id, idx in by_event.items():
            args: list[Any] = [now, *(head() if callable(head) else head)]
            for i in idx:
                args += fields(items[i])
            calls.append((op, await self.keys(event_id), args))
        raws = await self.run(op, calls)
        answered: dict[int, R] = {}
        for idx, raw in zip(by_event.values(), raws, strict=True):
            answered.update(zip(idx, decoder.decode(raw), strict=True))
        return [answered[i] for i in range(len(items))]
