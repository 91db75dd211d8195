"""The event log in PostgreSQL: numbered per event in commit order with no gaps, its entries
typed, its page generated from the structs."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import msgspec
import pytest

from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers
from storage.log_events import (
    ENTRY_TYPES,
    Actor,
    SaleStatePayload,
    decode_entry,
    events_markdown,
)
from storage.pg_store import PgStore, open_pg_store

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def pg(servers: EmbeddedServers) -> AsyncIterator[PgStore]:
    assert servers.database_url is not None
    async with open_bridge() as bridge, open_pg_store(servers.database_url, bridge) as store:
        await store.migrate()
        yield store


def _event() -> str:
    return "t" + secrets.token_hex(6)


async def _seqs(pg: PgStore, event_id: str) -> list[int]:
    return [decode_entry(e).seq for e in await pg.log.entries(event_id)]


@pytest.mark.once
def test_the_events_page_is_generated_from_the_structs() -> None:
    """docs/events.md is what the structs say (regenerate: python -m storage.log_events)."""
    assert (ROOT / "docs" / "events.md").read_text() == events_markdown()


@pytest.mark.once
def test_every_type_has_a_payload_refusing_unknown_fields() -> None:
    """Each type's payload refuses fields it does not declare: a writer's SQL and its struct
    cannot drift apart without the tests decoding the entries noticing."""
    for kind, cls in ENTRY_TYPES.items():
        payload = next(f.type for f in msgspec.structs.fields(cls) if f.name == "payload")
        assert payload.__struct_config__.forbid_unknown_fields, kind


async def test_concurrent_writers_number_each_event_one_to_n(pg: PgStore) -> None:
    """Writers of several events at once (multi-event batches in any order among them): each
    event's log is numbered 1..n, every number once."""
    events = [_event() for _ in range(3)]

    async def write(i: int) -> None:
        order = events if i % 2 else events[::-1]
        await pg.log.append(
            [(e, "sale_paused", SaleStatePayload(state="paused"), None) for e in order]
        )

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(write, i)
    for e in events:
        assert await _seqs(pg, e) == list(range(1, 31))


async def _raw(servers: EmbeddedServers) -> asyncpg.Connection:
    assert servers.database_url is not None
    return await asyncpg.connect(servers.database_url)


async def _on_asyncio(fn: Any) -> Any:
    async with open_bridge() as bridge:
        return await bridge.call(fn)


async def test_a_number_is_never_seen_before_the_ones_below_it(
    pg: PgStore, servers: EmbeddedServers
) -> None:
    """A transaction that logged entry 1 and has not committed yet: a second writer of the
    event waits for it, so a reader never sees entry 2 without entry 1 (a relay reading
    entries after its cursor would otherwise skip 1 for good); and one rolled back leaves no
    gap."""
    event_id = _event()
    insert = (
        "INSERT INTO event_log (event_id, kind, payload) "
        "VALUES ($1, 'sale_paused', '{\"state\": \"paused\"}') RETURNING seq"
    )

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        first, second, reader = await _raw(servers), await _raw(servers), await _raw(servers)
        try:
            # A rolled-back writer: its number is given again.
            tr = first.transaction()
            await tr.start()
            await first.fetchval(insert, event_id)
            await tr.rollback()

            tr = first.transaction()
            await tr.start()
            assert await first.fetchval(insert, event_id) == 1
            import asyncio

            later = asyncio.ensure_future(second.fetchval(insert, event_id))
            await asyncio.sleep(0.3)  # the second writer is blocked on the event's head row
            seen_while_open = [
                r["seq"]
                for r in await reader.fetch(
                    "SELECT seq FROM event_log WHERE event_id = $1", event_id
                )
            ]
            blocked = [] if later.done() else [0]
            await tr.commit()
            assert await later == 2
            seen = [
                r["seq"]
                for r in await reader.fetch(
                    "SELECT seq FROM event_log WHERE event_id = $1 ORDER BY seq", event_id
                )
            ]
            return seen_while_open, blocked, seen
        finally:
            for c in (first, second, reader):
                await c.close()

    seen_while_open, blocked, seen = await _on_asyncio(scenario)
    assert seen_while_open == []  # neither 1 (uncommitted) nor 2 (waiting behind it)
    assert blocked == [0]
    assert seen == [1, 2]


async def test_an_entry_happening_once_is_written_once(pg: PgStore) -> None:
    """Two workers seeing a sale open at once log it once (the head row is locked first)."""
    event_id = _event()
    await pg.log.append([(event_id, "sale_paused", SaleStatePayload(state="paused"), None)])
    results: list[bool] = []

    async def write() -> None:
        results.append(
            await pg.log.append_once(event_id, "sale_opened", SaleStatePayload(state="open"))
        )

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(write)
    assert sorted(results) == [False] * 7 + [True]
    assert await _seqs(pg, event_id) == [1, 2]


async def test_entries_carry_their_actor_and_decode_to_their_type(pg: PgStore) -> None:
    event_id = _event()
    actor = Actor(who="admin", request_id="r1", client_ip="127.0.0.1")
    await pg.log.append([(event_id, "sale_closed", SaleStatePayload(state="closed"), actor)])
    [entry] = [decode_entry(e) for e in await pg.log.entries(event_id)]
    assert type(entry).__name__ == "SaleClosed"
    assert (entry.event_id, entry.seq, entry.actor) == (event_id, 1, actor)
