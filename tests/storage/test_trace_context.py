"""A traced join's traceparent rides the line's entry to its prompt, and a traced payment's
rides the notify entry to its confirmation; untraced calls store not one byte more."""

from __future__ import annotations

from typing import Any

import pytest

from storage.keys import event_keys
from storage.records import Confirmed, Prompted
from storage.redis_store import JoinRequest, PaidHold, RedisStore
from tests.storage.helpers import T0, new_event

pytestmark = [pytest.mark.once, pytest.mark.anyio, pytest.mark.cluster]

JOIN_TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PAY_TP = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"


async def _raw(store: RedisStore, name: str, fn: Any) -> Any:
    """A raw read of Redis, to see the bytes the scripts stored."""
    return await store._call(name, fn)


async def _queue_fields(store: RedisStore, event_id: str) -> list[dict[bytes, bytes]]:
    async def read() -> Any:
        return await store._client.xrange(event_keys(event_id).queue)

    return [fields for _, fields in await _raw(store, "xrange", read)]


async def _ticket_json(store: RedisStore, event_id: str, seq: int) -> bytes:
    async def read() -> Any:
        return await store._client.hget(event_keys(event_id).tickets, str(seq))

    raw: bytes = await _raw(store, "hget", read)
    return raw


async def _notify_items(store: RedisStore, event_id: str) -> list[bytes]:
    async def read() -> Any:
        return await store._client.xrange(event_keys(event_id).notify)

    return [fields[b"d"] for _, fields in await _raw(store, "xrange", read)]


async def test_untraced_calls_store_nothing_more(redis_store: RedisStore, event_id: str) -> None:
    """Without a traceparent: the line's entry is just the client, the prompt and confirmation
    items keep their size, the admission summary names no trace."""
    ev = await new_event(redis_store, event_id)
    await ev.join("c1")
    assert await _queue_fields(redis_store, event_id) == [{b"c": b"c1"}]
    summary = await ev.admit()
    assert summary.admitted == 1 and summary.traces == []
    [batch] = await redis_store.read_notify(event_id, "0-0", 100)
    [prompted] = batch.outcomes
    assert isinstance(prompted, Prompted) and prompted.traceparent == ""
    assert b'"00-' not in (await _notify_items(redis_store, event_id))[0]
    await ev.begin(1, "k1")
    assert await ev.confirm(1, "k1", "bk1") == "confirmed"
    *_, confirmed_batch = await redis_store.read_notify(event_id, "0-0", 100)
    assert confirmed_batch.outcomes == [Confirmed(1, "bk1")]
    assert b"tp" not in await _ticket_json(redis_store, event_id, 1)


async def test_a_traced_booking_carries_its_traceparent(
    redis_store: RedisStore, event_id: str
) -> None:
    """The join's traceparent is in the line's entry, then in the prompt and the admission
    summary; the payment's is in the confirmation."""
    ev = await new_event(redis_store, event_id)
    await redis_store.join([JoinRequest(event_id, "c1", 1, "", JOIN_TP)], T0)
    await ev.check()
    assert await _queue_fields(redis_store, event_id) == [{b"c": b"c1", b"tp": JOIN_TP.encode()}]
    summary = await ev.admit()
    assert summary.traces == [(1, JOIN_TP)]
    [batch] = await redis_store.read_notify(event_id, "0-0", 100)
    [prompted] = batch.outcomes
    assert isinstance(prompted, Prompted) and prompted.traceparent == JOIN_TP
    await ev.begin(1, "k1")
    [done] = await redis_store.confirm_paid([PaidHold(event_id, 1, "k1", "bk1", PAY_TP)], T0)
    assert done == "confirmed"
    *_, confirmed_batch = await redis_store.read_notify(event_id, "0-0", 100)
    assert confirmed_batch.outcomes == [Confirmed(1, "bk1", PAY_TP)]


async def test_a_traced_pre_queue_join_keeps_its_traceparent_through_the_shuffle(
    redis_store: RedisStore, event_id: str
) -> None:
    """Before the line opens the traceparent waits in the ticket record; the opening shuffle
    moves it to the line's entry, and the prompt carries it."""
    opens = T0 + 60_000
    ev = await new_event(redis_store, event_id, opens_at_ms=opens)
    await redis_store.join([JoinRequest(event_id, "early", 1, "", JOIN_TP)], T0)
    await redis_store.join([JoinRequest(event_id, "plain", 1, "")], T0)
    assert JOIN_TP.encode() in await _ticket_json(redis_store, event_id, 1)
    assert b"tp" not in await _ticket_json(redis_store, event_id, 2)
    summary = await ev.admit(now=opens)
    assert summary.admitted == 2 and summary.traces == [(1, JOIN_TP)]
    assert b"tp" not in await _ticket_json(redis_store, event_id, 1)
    entries = await _queue_fields(redis_store, event_id)
    assert sorted(e.get(b"tp", b"") for e in entries) == [b"", JOIN_TP.encode()]
    [batch] = await redis_store.read_notify(event_id, "0-0", 100)
    traced = {o.seq: o.traceparent for o in batch.outcomes if isinstance(o, Prompted)}
    assert traced == {1: JOIN_TP, 2: ""}
