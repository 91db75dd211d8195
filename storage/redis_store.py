"""Redis: the inventory and the waiting line, changed only through the Lua scripts.

Every public method is one bridge crossing and one round trip, whatever the number
of requests it carries; methods taking lists group them per event and pipeline one
script call per event.

``REDIS_URL`` names one Redis (``redis://``, ``rediss://``, ``unix://``) or a Redis
Cluster (``redis+cluster://[user:password@]host:port[,host:port...]``, any of its
nodes: the client finds the others). On a cluster a round trip becomes one per node
the request's events live on, sent concurrently, and a blocking read of several
events' lines becomes one ``XREAD`` per slot, run concurrently: a command never
spans slots, since all keys of one event share its hash tag.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from storage.bridge import Bridge
from storage.errors import StorageError
from storage.keys import EVENTS_KEY, edge_bucket, event_keys
from storage.records import (
    AdmissionCaps,
    AdmitSummary,
    BeginPaymentResult,
    Confirmed,
    EventActivity,
    EventSnapshot,
    EventState,
    EventStatus,
    Expired,
    ExpireSummary,
    JoinResult,
    Left,
    NotifyBatch,
    Outcome,
    Prompted,
    SectionCounts,
    SoldOut,
    StateChange,
    TicketRecord,
)
from storage.scripts import FIXED_KEYS, RedisClient, ScriptCall, ScriptRunner
from storage.startup import retry_until_reachable

__all__ = [
    "BookedSeats",
    "BucketLimit",
    "Presence",
    "RedisStore",
    "ReturnedSeats",
    "TokenRequest",
    "UsedChallenge",
    "is_cluster_url",
    "open_redis_store",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A client asking for a place in an event's line."""

    event_id: str
    client_id: str
    quantity: int
    section: str
    #: The join's span, to carry through the line ("" when not traced).
    traceparent: str = ""
    #: The verified person joining ("" when the event requires no identity): one live
    #: place per person, and the event's ``max_per_person`` over all its orders.
    person: str = ""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request for a token from each of its buckets (names within its event)."""

    event_id: str
    buckets: tuple[tuple[str, str], ...]  # (kind, name), in the order of the limits


@dataclass(frozen=True, slots=True)
class UsedChallenge:
    """A solved join challenge of an event, remembered until its challenge expires."""

    event_id: str
    nonce: str
    expires_ms: int  # epoch ms


@dataclass(frozen=True, slots=True)
class BucketLimit:
    """How fast a bucket refills (tokens per second) and how many it holds."""

    rate_per_s: float
    burst: int


@dataclass(frozen=True, slots=True)
class HoldRef:
    """A hold (one per ticket) named by its event and ticket seq, with an idempotency key."""

    event_id: str
    seq: int
    key: str


@dataclass(frozen=True, slots=True)
class Presence:
    """A waiting client's connection lost (``gone``) or back."""

    event_id: str
    seq: int
    gone: bool


@dataclass(frozen=True, slots=True)
class PaidHold:
    """A hold whose booking is durable, to be marked sold."""

    event_id: str
    seq: int
    key: str
    booking_id: str
    #: The payment's span, for the confirmation's delivery ("" when not traced).
    traceparent: str = ""


@dataclass(frozen=True, slots=True)
class BookedSeats:
    """A booking durable in PostgreSQL, as reconciliation hands it to Redis."""

    event_id: str
    seq: int
    key: str
    booking_id: str
    section: str
    positions: tuple[int, ...]
    client_id: str
    amount_cents: int


@dataclass(frozen=True, slots=True)
class ReturnedSeats:
    """Seats of a booking's cancelled tickets (one section), to be put back on sale."""

    event_id: str
    seq: int
    booking_id: str
    section: str
    positions: tuple[int, ...]


_admit_decoder = msgspec.json.Decoder(AdmitSummary)
_expire_decoder = msgspec.json.Decoder(ExpireSummary)
_state_decoder = msgspec.json.Decoder(StateChange)
_caps_decoder = msgspec.json.Decoder(AdmissionCaps)
_join_decoder = msgspec.json.Decoder(list[JoinResult])
_begin_decoder = msgspec.json.Decoder(list[BeginPaymentResult])
_strings_decoder = msgspec.json.Decoder(list[str])
_string_decoder = msgspec.json.Decoder(str)
_ints_decoder = msgspec.json.Decoder(list[int])
_ticket_decoder = msgspec.json.Decoder(TicketRecord)
_items_decoder = msgspec.json.Decoder(list[list[Any]] | dict[str, Any])


def now_ms() -> int:
    """Wall-clock time in ms since the epoch."""
    return time.time_ns() // 1_000_000


def _shuffle_seeds() -> list[int]:
    """Two seeds for the opening shuffle of the pre-queue (scripts cannot draw their own)."""
    return [secrets.randbelow(2**31), secrets.randbelow(2**31)]


def _outcome(item: list[Any]) -> Outcome:
    seq, kind = int(item[0]), item[1]
    if kind == "prompt":
        seats = [int(p) for p in item[3]]
        traceparent = str(item[6]) if len(item) > 6 else ""
        return Prompted(seq, item[2], seats, int(item[4]), int(item[5]), traceparent)
    if kind == "sold_out":
        return SoldOut(seq)
    if kind == "expired":
        return Expired(seq)
    if kind == "confirmed":
        return Confirmed(seq, str(item[2]), str(item[3]) if len(item) > 3 else "")
    if kind == "left":
        return Left(seq)
    raise StorageError(f"unknown notify item kind {kind!r}")


def _notify_batch(entry_id: bytes, fields: dict[bytes, bytes]) -> NotifyBatch:
    items = _items_decoder.decode(fields[b"d"])
    after = fields.get(b"sold_out_after")
    wait = fields.get(b"sold_out_wait")
    return NotifyBatch(
        entry_id=entry_id.decode(),
        kind=fields[b"k"].decode(),
        serving=int(fields[b"srv"]),
        outcomes=[_outcome(i) for i in items] if isinstance(items, list) else [],
        sold_out_after=int(after) if after is not None else None,
        sold_out_wait=int(wait) if wait is not None else None,
    )


def _status(snap: EventSnapshot) -> EventStatus:
    """The typed reading of an event's hashes (the one place their field names are read)."""
    meta, stats = snap.meta, snap.stats

    def counts(suffix: str) -> SectionCounts:
        return SectionCounts(
            capacity=stats.get("capacity" + suffix, 0),
            free=stats.get("free" + suffix, 0),
            held=stats.get("held" + suffix, 0),
            sold=stats.get("sold" + suffix, 0),
        )

    sections = [s for s in meta.get("sections", "").split(",") if s]
    return EventStatus(
        state=EventState(meta["state"]),
        opened=meta.get("opened") == "1",
        opens_at_ms=int(meta.get("opens_at_ms", 0)),
        hold_ms=int(meta.get("hold_ms", 0)),
        max_active=int(meta.get("max_active", 0)),
        rate_per_min=int(meta.get("rate_per_min", 0)),
        issued=stats.get("seq", 0),
        serving=stats.get("serving", 0),
        admitted=stats.get("admitted", 0),
        expired=stats.get("expired", 0),
        confirmed=stats.get("confirmed", 0),
        seats=counts(""),
        sections={s: counts(":" + s) for s in sections},
    )


class RedisStore:
    """Typed, batch-oriented access to the event scripts and streams."""

    def __init__(self, client: RedisClient, bridge: Bridge) -> None:
        self._client = client  # the redis.asyncio client, used only on the drivers' loop
        self._bridge = bridge  # crosses into the drivers' loop
        self._scripts = ScriptRunner(client, bridge)  # loads and runs the Lua scripts

    @property
    def cluster(self) -> bool:
        """True when the store runs on a Redis Cluster."""
        return self._scripts.cluster

    async def together(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(*args)``, whose calls to this store (several round trips in a row) cross
        into the drivers' loop once for all (storage/bridge.py); ``fn`` must use nothing
        of the app's runtime but this store."""
        return await self._bridge.call(fn, *args)

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await self._scripts.call(op, fn)

    async def load_scripts(self) -> None:
        """Load every script into Redis (again after a restart or SCRIPT FLUSH)."""
        await self._scripts.load()

    # -- events -----------------------------------------------------------------

    async def create_event(
        self, event_id: str, config_json: bytes, section_ids: Sequence[str]
    ) -> bool:
        """Create an event's inventory from its config; False if it existed already."""
        keys = self._scripts.layout(event_id, section_ids)
        [created] = await self._scripts.run(
            "init_event", [("init_event", keys, [now_ms(), config_json])]
        )

        async def register() -> Any:
            await self._client.sadd(EVENTS_KEY, event_id)

        await self._call("register_event", register)
        return bool(int(created))

    async def event_ids(self) -> list[str]:
        """Every event id known to this deployment."""

        async def fetch() -> Any:
            return await self._client.smembers(EVENTS_KEY)

        return sorted(e.decode() for e in await self._call("event_ids", fetch))

    async def activity(self, event_ids: Sequence[str]) -> dict[str, EventActivity]:
        """Each event's state, line and open holds, in one round trip."""
        keys = [event_keys(e) for e in event_ids]

        async def fetch() -> Any:
            pipe = self._client.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(k.meta, ["state", "opens_at_ms"])
                pipe.hmget(k.stats, ["seq", "serving"])
                pipe.zcard(k.expiry)
            return await pipe.execute()

        if not keys:
            return {}
        trips = self._scripts.nodes([k.meta for k in keys])
        replies = await self._scripts.call("activity", fetch, trips=trips)
        out: dict[str, EventActivity] = {}
        for i, event_id in enumerate(event_ids):
            (state, opens_at), (seq, serving), holds = replies[3 * i : 3 * i + 3]
            if state is not None:
                out[event_id] = EventActivity(
                    EventState(state.decode()),
                    int(seq or 0),
                    int(serving or 0),
                    int(holds),
                    int(opens_at or 0),
                )
        return out

    async def publish_log(self, entries: Sequence[tuple[str, int, bytes]], maxlen: int) -> None:
        """Append (event id, seq, entry JSON) to each event's log stream, in order, in one
        round trip per node; each stream trimmed to about ``maxlen`` entries."""
        if not entries:
            return

        async def append() -> Any:
            pipe = self._client.pipeline(transaction=False)
            for event_id, seq, body in entries:
                pipe.xadd(
                    event_keys(event_id).log,
                    {"seq": seq, "entry": body},
                    maxlen=maxlen,
                    approximate=True,
                )
            return await pipe.execute()

        trips = self._scripts.nodes([event_keys(e).log for e, _, _ in entries])
        await self._scripts.call("publish_log", append, trips=trips)

    async def read_log(self, event_id: str, count: int = 10_000) -> list[tuple[int, bytes]]:
        """An event's log stream as published: (seq, entry JSON), oldest first."""

        async def fetch() -> Any:
            return await self._client.xrange(event_keys(event_id).log, count=count)

        rows = await self._call("read_log", fetch)
        return [(int(fields[b"seq"]), bytes(fields[b"entry"])) for _, fields in rows]

    async def wait_for_joins(self, after_seq: Mapping[str, int], block_ms: int) -> bool:
        """Block until any of these events' lines has an entry after its seq (or time runs out)."""
        if not after_seq:
            raise ValueError("wait_for_joins needs at least one event")
        streams = {event_keys(e).queue: f"{seq}-0" for e, seq in after_seq.items()}
        return await self._block_on("wait_for_joins", streams, block_ms)

    async def _block_on(self, op: str, streams: dict[str, str], block_ms: int) -> bool:
        """Whether any stream has an entry after its id within block_ms: one blocking
        XREAD, or on a cluster one per slot, run concurrently (the first to answer wins)."""
        if not self.cluster:
            groups: list[dict[Any, Any]] = [dict(streams)]
        else:
            by_slot: dict[int, dict[Any, Any]] = defaultdict(dict)
            for stream, after in streams.items():
                by_slot[key_slot(stream.encode())][stream] = after
            groups = list(by_slot.values())

        async def read(group: dict[Any, Any]) -> bool:
            return bool(await self._client.xread(group, count=1, block=block_ms))

        async def block() -> bool:
            if len(groups) == 1:
                return await read(groups[0])
            reads = [asyncio.ensure_future(read(g)) for g in groups]
            try:
                pending: set[asyncio.Future[bool]] = set(reads)
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    if any(read.result() for read in done):
                        return True
                return False
            finally:  # a cancelled read drops its connection: no reply is left unread
                for pending_read in reads:
                    pending_read.cancel()
                await asyncio.gather(*reads, return_exceptions=True)

        return await self._scripts.call(op, block, trips=len(groups), blocking=True)

    async def snapshot(self, event_id: str) -> EventSnapshot | None:
        """An event's meta and stats hashes as the scripts keep them, or None if unknown.

        For the scripts' own tests; everything else reads :meth:`status`.
        """
        k = event_keys(event_id)

        async def fetch() -> Any:
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(k.meta)
            pipe.hgetall(k.stats)
            return await pipe.execute()

        meta, stats = await self._call("snapshot", fetch)
        if not meta:
            return None
        return EventSnapshot(
            meta={a.decode(): b.decode() for a, b in meta.items()},
            stats={a.decode(): int(b) for a, b in stats.items()},
        )

    async def status(self, event_id: str) -> EventStatus | None:
        """An event's state, caps and counters (one round trip), or None if unknown."""
        snap = await self.snapshot(event_id)
        return None if snap is None else _status(snap)

    async def set_event_state(self, event_id: str, action: str, now: int) -> StateChange:
        """Pause, resume or close admission."""
        keys = await self._scripts.keys(event_id)
        [raw] = await self._scripts.run(
            "set_event_state", [("set_event_state", keys, [now, action])]
        )
        return _state_decoder.decode(raw)

    async def set_admission(
        self, event_id: str, now: int, max_active: int | None, rate_per_min: int | None
    ) -> AdmissionCaps:
        """Change the admission caps (None keeps one); wakes workers waiting on the caps."""
        keys = await self._scripts.keys(event_id)
        args = [now, "" if max_active is None else max_active]
        args.append("" if rate_per_min is None else rate_per_min)
        [raw] = await self._scripts.run("set_admission", [("set_admission", keys, args)])
        return _caps_decoder.decode(raw)

    async def places(self, event_id: str, seqs: Sequence[int]) -> dict[int, int]:
        """The place in line of each ticket (0 while in the pre-queue), one round trip."""
        if not seqs:
            return {}
        k = event_keys(event_id)

        async def fetch() -> Any:
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(k.tickets, [str(s) for s in seqs])
            pipe.hget(k.meta, "opened")
            return await pipe.execute()

        raws, opened = await self._call("places", fetch)
        out: dict[int, int] = {}
        for seq, raw in zip(seqs, raws, strict=True):
            if raw is not None:
                rec = _ticket_decoder.decode(raw)
                out[seq] = rec.drawn_place or (seq if opened == b"1" else 0)
        return out

    async def seat_maps(self, event_id: str) -> dict[str, str]:
        """The seat map of each section (for audits and tests)."""
        keys = await self._scripts.keys(event_id)
        sections = await self._scripts.sections(event_id)

        async def fetch() -> Any:
            return await self._client.mget(keys[FIXED_KEYS:])

        maps = await self._call("seat_maps", fetch)
        return {s: m.decode() for s, m in zip(sections, maps, strict=True)}

    async def ticket(self, event_id: str, seq: int) -> TicketRecord | None:
        """The record of one ticket, or None."""

        async def fetch() -> Any:
            return await self._client.hget(event_keys(event_id).tickets, str(seq))

        raw = await self._call("ticket", fetch)
        return None if raw is None else _ticket_decoder.decode(raw)

    async def challenge_difficulty(self, event_id: str) -> int | None:
        """The join challenge's difficulty an admin set (None: never set)."""

        async def fetch() -> Any:
            return await self._client.get(event_keys(event_id).challenge_difficulty())

        raw = await self._call("challenge_difficulty", fetch)
        return None if raw is None else int(raw)

    async def set_challenge_difficulty(self, event_id: str, difficulty: int) -> None:
        """Set the join challenge's difficulty of an event."""

        async def put() -> Any:
            return await self._client.set(event_keys(event_id).challenge_difficulty(), difficulty)

        await self._call("set_challenge_difficulty", put)

    async def use_challenges(self, used: Sequence[UsedChallenge]) -> list[bool]:
        """Remember solved challenges until they expire; one round trip for all of them
        (one script call per event, each in its event's hash tag). False for a solution
        used already, by an earlier call or earlier in ``used``."""
        by_event: dict[str, list[int]] = defaultdict(list)
        for i, u in enumerate(used):
            by_event[u.event_id].append(i)
        calls: list[ScriptCall] = [
            (
                "use_challenges",
                [event_keys(event_id).used_challenge(used[i].nonce) for i in idx],
                [used[i].expires_ms for i in idx],
            )
            for event_id, idx in by_event.items()
        ]
        raws = await self._scripts.run("use_challenges", calls)
        answered: dict[int, bool] = {}
        for idx, raw in zip(by_event.values(), raws, strict=True):
            answered.update(zip(idx, (bool(x) for x in _ints_decoder.decode(raw)), strict=True))
        return [answered[i] for i in range(len(used))]

    async def put_email_code(
        self, event_id: str, address_hash: str, code_hash: str, ttl_ms: int
    ) -> None:
        """Keep the (hashed) code sent to an address for ``ttl_ms``, replacing an earlier
        one and forgetting its attempts."""
        keys = event_keys(event_id)

        async def put() -> Any:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(keys.email_code(address_hash), code_hash, px=ttl_ms)
                pipe.delete(keys.email_attempts(address_hash))
                return await pipe.execute()

        await self._call("put_email_code", put)

    async def try_email_code(
        self, event_id: str, address_hash: str, ttl_ms: int
    ) -> tuple[str | None, int]:
        """Count an attempt at an address's code: its hash (None: no code, or it expired)
        and the attempts made so far, this one included (one atomic step; the count
        expires ``ttl_ms`` after the last attempt)."""
        keys = event_keys(event_id)

        async def attempt() -> Any:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(keys.email_code(address_hash))
                pipe.incr(keys.email_attempts(address_hash))
                pipe.pexpire(keys.email_attempts(address_hash), ttl_ms)
                return await pipe.execute()

        code_hash, attempts, _ = await self._call("try_email_code", attempt)
        if isinstance(code_hash, bytes):
            code_hash = code_hash.decode()
        return code_hash, int(attempts)

    async def drop_email_code(self, event_id: str, address_hash: str) -> None:
        """Forget an address's code (used, or out of attempts)."""
        keys = event_keys(event_id)

        async def drop() -> Any:
            return await self._client.delete(keys.email_code(address_hash))

        await self._call("drop_email_code", drop)

    async def person_seats(self, event_id: str, person: str) -> int:
        """Seats a verified person holds or bought in an event (its ``max_per_person`` count)."""

        async def fetch() -> Any:
            return await self._client.hget(event_keys(event_id).clients, f"#n:{person}")

        raw = await self._call("person_seats", fetch)
        return int(raw or 0)

    async def tickets(self, event_id: str) -> dict[int, TicketRecord]:
        """Every ticket of an event (for audits and tests: O(tickets))."""

        async def fetch() -> Any:
            return await self._client.hgetall(event_keys(event_id).tickets)

        raw = await self._call("tickets", fetch)
        return {int(s): _ticket_decoder.decode(r) for s, r in raw.items()}

    # -- the line ---------------------------------------------------------------

    async def admit(
        self,
        event_id: str,
        now: int,
        max_count: int,
        grace_ms: int | None = None,
        *,
        pace: int | None = None,
    ) -> AdmitSummary:
        """Decide up to ``max_count`` clients at the head of the line; clients gone for
        ``grace_ms`` or longer are skipped as left (None: never). With ``pace``, admit
        only while the prompts the realtime servers have yet to deliver stay under it
        (reason "paced" when it stopped the call; see :meth:`report_backlog`)."""
        keys = await self._scripts.keys(event_id)
        args: list[Any] = [now, max_count, *_shuffle_seeds()]
        args.append("" if grace_ms is None else grace_ms)
        args.append(pace or 0)
        [raw] = await self._scripts.run("admit_next", [("admit_next", keys, args)])
        return _admit_decoder.decode(raw)

    async def report_backlog(
        self, event_id: str, server: str, pending: int, seen: str, ttl_ms: int
    ) -> None:
        """Record one realtime server's delivery report for an event: ``pending`` prompts
        routed to its clients and not yet written, every prompt of the notify entries up
        to ``seen`` routed. It counts for ``ttl_ms`` (on Redis's clock), then lapses."""
        key = event_keys(event_id).backlog
        call: ScriptCall = ("report_backlog", [key], [server, pending, seen, ttl_ms])
        await self._scripts.run("report_backlog", [call])

    async def expire(self, event_id: str, now: int, limit: int) -> ExpireSummary:
        """Release up to ``limit`` holds that are due."""
        keys = await self._scripts.keys(event_id)
        [raw] = await self._scripts.run("expire_holds", [("expire_holds", keys, [now, limit])])
        return _expire_decoder.decode(raw)

    async def wait_for_line(self, event_id: str, after_seq: int, block_ms: int) -> bool:
        """Block until the line has an entry after ``after_seq`` (or time runs out)."""
        queue = event_keys(event_id).queue
        return await self._block_on("wait_for_line", {queue: f"{after_seq}-0"}, block_ms)

    async def wait_for_notify(self, event_id: str, after_id: str, block_ms: int) -> bool:
        """Block until the notify stream has an entry after ``after_id`` (or time runs out)."""
        stream = event_keys(event_id).notify
        return await self._block_on("wait_for_notify", {stream: after_id}, block_ms)

    async def read_notify(
        self, event_id: str, last_id: str, block_ms: int, count: int = 1000
    ) -> list[NotifyBatch]:
        """Notify entries after ``last_id``, blocking up to ``block_ms`` (> 0) for the first."""
        if block_ms <= 0:
            raise ValueError("block_ms must be positive (0 would block forever)")
        stream = event_keys(event_id).notify

        async def read() -> Any:
            return await self._client.xread({stream: last_id}, count=count, block=block_ms)

        reply = await self._scripts.call("read_notify", read, blocking=True)
        if not reply:
            return []
        [(_, entries)] = reply
        return [_notify_batch(entry_id, fields) for entry_id, fields in entries]

    async def last_notify_id(self, event_id: str) -> str:
        """The id of the newest notify entry ("0-0" when none)."""
        stream = event_keys(event_id).notify

        async def fetch() -> Any:
            return await self._client.xrevrange(stream, count=1)

        reply = await self._call("last_notify_id", fetch)
        return reply[0][0].decode() if reply else "0-0"

    # -- batched script calls ---------------------------------------------------

    async def join(self, requests: Sequence[JoinRequest], now: int) -> list[JoinResult]:
        """Give each client a place in its event's line (one round trip for all)."""
        return await self._scripts.per_event(
            "join_queue",
            now,
            _shuffle_seeds,
            requests,
            lambda r: [r.client_id, r.quantity, r.section, r.traceparent, r.person],
            _join_decoder,
        )

    async def take_tokens(
        self,
        requests: Sequence[TokenRequest],
        limits: Sequence[BucketLimit],
        now: int,
        *,
        edge: bool = False,
    ) -> list[bool]:
        """Take a token from every bucket of each request (all or none); one round trip.

        ``edge``: the requests' ``event_id`` names an edge route, not an event (its
        buckets are ``edge_bucket`` keys rather than the event's join buckets).
        """
        by_event: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            if len(r.buckets) != len(limits):
                raise ValueError("one limit per bucket of a request")
            by_event[r.event_id].append(i)
        head: list[Any] = [now, len(limits)]
        for limit in limits:
            head += [limit.rate_per_s, limit.burst]
        calls: list[ScriptCall] = []
        for event_id, idx in by_event.items():
            name_of = partial(edge_bucket, event_id) if edge else event_keys(event_id).join_bucket
            keys = [name_of(kind, name) for i in idx for kind, name in requests[i].buckets]
            calls.append(("take_tokens", keys, head))
        raws = await self._scripts.run("take_tokens", calls)
        answered: dict[int, bool] = {}
        for idx, raw in zip(by_event.values(), raws, strict=True):
            answered.update(zip(idx, (bool(x) for x in _ints_decoder.decode(raw)), strict=True))
        return [answered[i] for i in range(len(requests))]

    async def mark_presence(self, marks: Sequence[Presence], now: int) -> list[str]:
        """Note lost and regained connections of waiting clients (one round trip for all)."""
        return await self._scripts.per_event(
            "mark_presence",
            now,
            [],
            marks,
            lambda m: [m.seq, "1" if m.gone else "0"],
            _strings_decoder,
        )

    async def begin_payments(
        self, holds: Sequence[HoldRef], now: int, window_ms: int
    ) -> list[BeginPaymentResult]:
        """Claim holds for payment (one round trip for all)."""
        return await self._scripts.per_event(
            "begin_payment", now, [window_ms], holds, lambda h: [h.seq, h.key], _begin_decoder
        )

    async def abort_payments(self, holds: Sequence[HoldRef], now: int) -> list[str]:
        """Make holds payable again after their payments failed."""
        return await self._scripts.per_event(
            "abort_payment", now, [], holds, lambda h: [h.seq, h.key], _strings_decoder
        )

    async def release_hold(self, event_id: str, seq: int, now: int) -> str:
        """Give ticket ``seq``'s hold back: "released", "paying" (a payment is in flight;
        nothing changes) or "not_held" (no open hold)."""
        keys = await self._scripts.keys(event_id)
        [raw] = await self._scripts.run("release_hold", [("release_hold", keys, [now, seq])])
        result: str = _string_decoder.decode(raw)
        return result

    async def confirm_paid(self, paid: Sequence[PaidHold], now: int) -> list[str]:
        """Mark paid holds sold and tell their clients."""
        return await self._scripts.per_event(
            "confirm_paid",
            now,
            [],
            paid,
            lambda p: [p.seq, p.key, p.booking_id, p.traceparent],
            _strings_decoder,
        )

    async def reconcile_bookings(self, booked: Sequence[BookedSeats], now: int) -> list[str]:
        """Sell the seats of durable bookings in Redis, or report each conflict."""
        return await self._scripts.per_event(
            "reconcile_bookings",
            now,
            [],
            booked,
            lambda b: [
                b.seq,
                b.key,
                b.booking_id,
                b.section,
                ",".join(map(str, b.positions)),
                b.client_id,
                b.amount_cents,
            ],
            _strings_decoder,
        )

    async def return_seats(self, returned: Sequence[ReturnedSeats], now: int) -> list[str]:
        """Free the seats of cancelled tickets (one round trip for all): "returned", "done"
        (returned before) or "conflict:<reason>" each; a sold-out event opens again."""
        return await self._scripts.per_event(
            "return_seats",
            now,
            [],
            returned,
            lambda r: [r.seq, r.booking_id, r.section, ",".join(map(str, r.positions))],
            _strings_decoder,
        )

    async def ping(self) -> None:
        """Raise StorageUnavailable unless Redis answers."""

        async def ping() -> Any:
            if isinstance(self._client, RedisCluster):  # every primary; replicas may be down
                return await self._client.execute_command(
                    "PING", target_nodes=RedisCluster.PRIMARIES
                )
            return await self._client.ping()

        await self._call("ping", ping)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._bridge.call(self._client.aclose)


#: The scheme of a Redis Cluster's URL.
CLUSTER_SCHEME = "redis+cluster"


def is_cluster_url(url: str) -> bool:
    """True when ``url`` names a Redis Cluster (``redis+cluster://host:port,...``)."""
    return url.startswith(CLUSTER_SCHEME + "://")


def _cluster_netloc(url: str) -> tuple[str, str]:
    """(user info, comma-separated host:port list) of a cluster URL."""
    rest = url.removeprefix(CLUSTER_SCHEME + "://").split("/", 1)[0]
    userinfo, _, hosts = rest.rpartition("@")
    return userinfo, hosts


def _cluster_nodes(url: str) -> list[ClusterNode]:
    """The startup nodes named by a cluster URL (ValueError when it names none)."""
    nodes = []
    for entry in filter(None, _cluster_netloc(url)[1].split(",")):
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"cluster node {entry!r} is not host:port")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError(f"{CLUSTER_SCHEME}:// URL names no node")
    return nodes


def _cluster_credentials(url: str) -> tuple[str | None, str | None]:
    """(username, password) from a cluster URL's user info (None where absent)."""
    user, sep, password = _cluster_netloc(url)[0].partition(":")
    if not sep:  # redis+cluster://password@host:port, or nothing
        return None, unquote(user) if user else None
    return unquote(user) if user else None, unquote(password)


#: Connections to Redis (to each node of a cluster) a process opens at most.
MAX_CONNECTIONS = 512

#: Longest wait for one reply from Redis before it counts as unreachable, seconds.
SOCKET_TIMEOUT_S = 20.0


@asynccontextmanager
async def open_redis_store(
    url: str, bridge: Bridge, *, wait_s: float = 0.0
) -> AsyncIterator[RedisStore]:
    """Connect to Redis at ``url``, load the scripts, and close on exit.

    A Redis not reachable yet is tried again for up to ``wait_s`` seconds.
    """

    async def connect() -> RedisClient:
        if is_cluster_url(url):
            # Connections per node as many as the single pool's: every event's
            # admission loop holds one in a blocking read. (The cluster's pools fail
            # when full instead of waiting: redis-py's default of 100 per node made a
            # worker with 100 events on a node see Redis as unreachable.)
            username, password = _cluster_credentials(url)
            return RedisCluster(
                startup_nodes=_cluster_nodes(url),
                username=username,
                password=password,
                max_connections=MAX_CONNECTIONS,
                socket_timeout=SOCKET_TIMEOUT_S,
            )
        # A blocking pool waits for a free connection instead of failing when many
        # tasks hold one in a blocking read at once. redis-py's 5 s read timeout
        # declared Redis unreachable when a loaded process's loop came back late to
        # an answer Redis gave in milliseconds; a dead Redis still fails at connect.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=10, socket_timeout=SOCKET_TIMEOUT_S
        )
        return aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes it

    client = await bridge.call(connect)
    store = RedisStore(client, bridge)
    try:
        await retry_until_reachable("Redis", store.load_scripts, wait_s)
        yield store
    finally:
        await store.aclose()
