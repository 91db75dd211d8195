"""Running the Lua scripts: loading, key layouts, one pipelined round trip per batch, NOSCRIPT.

This is the one module that knows how a script call reaches Redis: every script
is loaded once and called by SHA (``EVALSHA``), reloaded when Redis answers
NOSCRIPT (after a restart or ``SCRIPT FLUSH``), and a batch of calls (one per
event) goes out as one pipeline. The typed methods of ``redis_store.py`` say
*which* script to run with which arguments; this module says *how*.

On a Redis Cluster (``redis.asyncio.cluster.RedisCluster``) scripts are loaded on
every primary, and a batch's pipeline is split by the cluster client into one
pipeline per node, sent concurrently: still one round trip per node. Every key of
a call carries its event's hash tag, so a call never spans slots. A call Redis
answers NOSCRIPT (a restarted server, a replica promoted after a failover) did not
run: the scripts are loaded again and only those calls are sent again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from storage.bridge import Bridge
from storage.errors import StorageError, StorageUnavailable
from storage.keys import event_keys
from storage.metrics import BATCH_SIZE, ROUND_TRIPS

__all__ = ["FIXED_KEYS", "SCRIPT_NAMES", "RedisClient", "ScriptCall", "ScriptRunner"]

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
    "use_challenges",
    "report_backlog",
)

#: Scripts that do not work on an event's key layout, loaded without the prelude.
_STANDALONE = frozenset({"take_tokens", "use_challenges", "report_backlog"})

#: How many KEYS of an event's layout come before its seat maps (``MAPS_AT`` in the prelude).
FIXED_KEYS = 8

#: One script call: the script's name, its KEYS and its ARGV.
ScriptCall = tuple[str, list[str], list[Any]]

#: The driver's client: one Redis, or a Redis Cluster.
RedisClient = aioredis.Redis | RedisCluster


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

    def __init__(self, client: RedisClient, bridge: Bridge) -> None:
        self._client = client  # the redis.asyncio client, used only on the drivers' loop
        self._bridge = bridge  # crosses into the drivers' loop
        self._shas: dict[str, str] = {}  # script name -> SHA1 once loaded
        self._sections: dict[str, list[str]] = {}  # event id -> its section ids, immutable

    async def call(
        self, op: str, fn: Callable[[], Awaitable[T]], *, trips: int = 1, blocking: bool = False
    ) -> T:
        """One round trip: ``fn()`` on the drivers' loop, counted under ``op``; driver
        errors become StorageUnavailable (unreachable) or StorageError. ``blocking``: the
        call waits (a blocking read) and must end as soon as its caller is cancelled."""
        ROUND_TRIPS.labels("redis", op).inc(trips)
        try:
            if blocking:
                return await self._bridge.call_blocking(fn)
            return await self._bridge.call(fn)
        except (redis_errors.RedisError, redis_errors.RedisClusterException, OSError) as exc:
            raise storage_error(op, exc) from exc
        except (AttributeError, TypeError) as exc:
            # redis-py's cluster client, refreshing its view of the nodes after a failover,
            # closes connections other calls are using (and may drop the node a call was
            # routed to): such a call then fails inside the driver on the missing socket
            # (``'NoneType' object has no attribute 'writelines'``). The connection was
            # lost, as in a ConnectionError: the caller retries or reports unavailability.
            if not (self.cluster and _raised_in_driver(exc)):
                raise
            raise StorageUnavailable(
                f"Redis unreachable during {op}: the cluster client lost its connection "
                f"mid-call ({type(exc).__name__}: {exc})"
            ) from exc

    @property
    def cluster(self) -> bool:
        """True on a Redis Cluster."""
        return isinstance(self._client, RedisCluster)

    def nodes(self, keys: Sequence[str]) -> int:
        """How many servers these keys live on (1 on a single Redis): the round trips
        of a pipeline touching them."""
        if not isinstance(self._client, RedisCluster):
            return 1
        client = self._client
        return len({getattr(client.get_node_from_key(k), "name", "") for k in keys}) or 1

    async def load(self) -> None:
        """Load every script into Redis (again after a restart or SCRIPT FLUSH)."""

        async def load() -> dict[str, str]:
            if isinstance(self._client, RedisCluster):
                # SCRIPT LOAD goes to every primary; the loads run concurrently.
                shas = await asyncio.gather(
                    *(self._client.script_load(_SOURCES[name]) for name in SCRIPT_NAMES)
                )
            else:
                pipe = self._client.pipeline(transaction=False)
                for name in SCRIPT_NAMES:
                    pipe.script_load(_SOURCES[name])
                shas = await pipe.execute()
            return {
                n: s.decode() if isinstance(s, bytes) else s
                for n, s in zip(SCRIPT_NAMES, shas, strict=True)
            }

        trips = len(SCRIPT_NAMES) if self.cluster else 1
        self._shas = await self.call("script_load", load, trips=trips)

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
        fixed = [k.meta, k.stats, k.queue, k.tickets, k.clients, k.expiry, k.notify, k.backlog]
        assert len(fixed) == FIXED_KEYS
        return fixed + [k.seat_map(s) for s in sections]

    async def run(self, op: str, calls: list[ScriptCall]) -> list[bytes]:
        """Run script calls in one pipelined round trip (one per node on a cluster); the
        calls answered NOSCRIPT run again, once, after the scripts are loaded again."""
        BATCH_SIZE.labels(op).observe(len(calls))
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pending = [calls[i] for i in todo]

            async def run(pending: list[ScriptCall] = pending) -> Any:
                pipe = self._client.pipeline(transaction=False)
                for name, keys, args in pending:
                    # The command itself, not ``pipe.evalsha``: redis-py refuses that
                    # method on a cluster pipeline, as it cannot reload scripts per node;
                    # this runner does (NOSCRIPT calls run again after ``load``). The
                    # cluster pipeline routes each call by its keys' slot, and refuses
                    # a call whose keys span slots.
                    pipe.execute_command("EVALSHA", self._shas[name], len(keys), *keys, *args)
                return await pipe.execute(raise_on_error=False)

            trips = self.nodes([keys[0] for _, keys, _ in pending])
            replies = await self.call(op, run, trips=trips)
            missing: list[int] = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, redis_errors.NoScriptError) and attempt == 0:
                    missing.append(i)
                elif isinstance(reply, BaseException):
                    raise storage_error(op, reply) from reply
                else:
                    results[i] = reply
            if not missing:
                break
            await self.load()
            todo = missing
        return results

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


def storage_error(op: str, exc: BaseException) -> StorageError:
    """A driver error as the store's: StorageUnavailable when Redis (or, on a cluster,
    the node serving the keys, a failover under way) cannot answer, else StorageError."""
    if isinstance(exc, _UNREACHABLE):
        return StorageUnavailable(f"Redis unreachable during {op}: {exc}")
    return StorageError(f"Redis error during {op}: {exc}")


def _raised_in_driver(exc: BaseException) -> bool:
    """True when ``exc`` was raised inside redis-py (a frame of its package lies between
    the call and the raise), not in this package's code around it."""
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_DRIVER_DIR):
            return True
        tb = tb.tb_next
    return False


#: Where redis-py's modules live.
_DRIVER_DIR = Path(redis_errors.__file__).resolve().parent


_UNREACHABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    redis_errors.ClusterDownError,  # CLUSTERDOWN, MASTERDOWN: a failover under way
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)
