"""The report of an event: read models the worker's projector builds from the event log,
equal to the system of record's tables, rebuilt byte for byte by a replay of the log."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from api.client import ApiError, BookingClient, WaitingRoom
from api.http.schemas import BookingView
from api.wiring import Services, open_services
from engine.eventlog import summarise_once
from engine.readmodels import ProjectorPolicy, apply_next, project_once, replay
from storage.embedded import EmbeddedServers
from storage.log_events import SaleStatePayload
from tests.api.helpers import STEP_S, event_body, new_key, pg_value, prompted, queued_in
from tests.conftest import admin_client, admin_headers, make_settings

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def buy_in(
    client: BookingClient, waitroom_url: str, quantity: int, section: str
) -> BookingView:
    """One booking of ``quantity`` seats of ``section``, through the waiting room and a payment."""
    async with WaitingRoom.connect(waitroom_url) as room:
        await queued_in(room, new_key("buyer"), quantity, section)
        prompt = await prompted(room)
        return await client.pay(prompt.hold_id, prompt.hold_token, "tok_visa", new_key())


async def caught_up(http: httpx.AsyncClient, event_id: str) -> bytes:
    """The report's body once it counts the whole log (the worker's projector applies it)."""
    with anyio.fail_after(STEP_S):
        while True:
            resp = await http.get(f"/v1/events/{event_id}/report", headers=admin_headers())
            assert resp.status_code == 200, resp.text
            body = resp.json()
            if body["as_of_seq"] == body["log_seq"]:
                return resp.content
            await anyio.sleep(0.05)


async def system_of_record(services: Services, event_id: str) -> dict[str, Any]:
    """The totals as PostgreSQL's bookings, payments, cancellations and tickets tables
    hold them."""
    sql = {
        "bookings": "SELECT count(*) FROM bookings WHERE event_id = $1",
        "revenue_cents": "SELECT coalesce(sum(p.amount_cents), 0) FROM payments p "
        "JOIN bookings b ON b.id = p.booking_id WHERE b.event_id = $1",
        "tickets_sold": "SELECT count(*) FROM tickets WHERE event_id = $1",
        "tickets_cancelled": "SELECT count(*) FROM tickets WHERE event_id = $1 AND NOT live",
        "bookings_cancelled": "SELECT count(*) FROM bookings WHERE event_id = $1 "
        "AND status = 'cancelled'",
        "cancellations": "SELECT count(*) FROM cancellations WHERE event_id = $1 "
        "AND status = 'done'",
        "refunded_cents": "SELECT coalesce(sum(amount_cents), 0) FROM cancellations "
        "WHERE event_id = $1 AND status = 'done'",
        "checked_in": "SELECT count(*) FROM tickets WHERE event_id = $1 "
        "AND checked_in_at IS NOT NULL",
    }
    return {name: int(await pg_value(services, q, event_id)) for name, q in sql.items()}


async def sections_of_record(services: Services, event_id: str) -> dict[str, dict[str, int]]:
    """Per section: tickets sold, cancelled and let in, and their prices, from the tables."""
    sql = """
    SELECT json_object_agg(section, json_build_object(
        'tickets_sold', sold, 'revenue_cents', revenue, 'tickets_cancelled', cancelled,
        'refunded_cents', refunded, 'checked_in', checked_in))::text
    FROM (
        SELECT t.section, count(*) AS sold, sum(s.price_cents) AS revenue,
               count(*) FILTER (WHERE NOT t.live) AS cancelled,
               coalesce(sum(s.price_cents) FILTER (WHERE NOT t.live), 0) AS refunded,
               count(*) FILTER (WHERE t.checked_in_at IS NOT NULL) AS checked_in
        FROM tickets t JOIN seats s
          ON s.event_id = t.event_id AND s.section = t.section AND s.position = t.position
        WHERE t.event_id = $1 GROUP BY t.section
    ) per_section
    """
    found: dict[str, dict[str, int]] = json.loads(await pg_value(services, sql, event_id))
    return found


async def test_the_report_equals_the_tables_and_a_replay_rebuilds_it_byte_for_byte(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """A sale with payments, cancellations (whole and partial), refunds and check-ins through
    the public API: the report's totals equal PostgreSQL's tables to the cent, per section
    too; replaying the log rebuilds the very same JSON body."""
    created = await client.create_event(event_body())
    event_id = created.id
    bookings = [
        await buy_in(client, created.waitroom_url, 2, "A"),
        await buy_in(client, created.waitroom_url, 3, "GA"),
        await buy_in(client, created.waitroom_url, 2, "A"),
        await buy_in(client, created.waitroom_url, 1, "GA"),
    ]
    whole, partial, scanned, _ = bookings
    await client.cancel(whole.id, new_key("whole"))
    await client.cancel(partial.id, new_key("part"), tickets=[partial.tickets[0].code])
    key = await client.create_staff_key(event_id, "Main")
    await client.checkin(key.key, scanned.tickets[0].code, "Main")
    await client.checkin(key.key, partial.tickets[1].code, "Main")
    assert await summarise_once(services.pg, services.redis, services.clock) >= 1

    live = await caught_up(http, event_id)
    report = (await client.report(event_id)).totals
    expected = await system_of_record(services, event_id)
    assert {name: getattr(report, name) for name in expected} == expected
    assert expected["revenue_cents"] == 2 * 2_500 + 3 * 1_000 + 2 * 2_500 + 1_000
    assert expected["refunded_cents"] == 2 * 2_500 + 1_000
    assert report.net_revenue_cents == expected["revenue_cents"] - expected["refunded_cents"]
    assert report.checked_in == 2 and report.tickets_cancelled == 3
    assert report.admitted == 4 and report.confirmed == 4
    full = await client.report(event_id)
    assert full.currency == "EUR" and full.name == "Flash sale test"
    assert [s.section for s in full.sections] == ["A", "GA"]
    assert [s.capacity for s in full.sections] == [8, 10]
    expected_sections = await sections_of_record(services, event_id)
    by_section = {
        s.section: {name: getattr(s, name) for name in expected_sections["A"]}
        for s in full.sections
    }
    assert by_section == expected_sections
    assert sum(m.revenue_cents for m in full.minutes) == expected["revenue_cents"]
    assert sum(m.checked_in for m in full.minutes) == 2

    # A replay of the whole log builds the same bytes (an entry logged meanwhile, such as a
    # worker's admission summary, would change both: then they are compared again).
    for _ in range(3):
        applied = await replay(services.pg, event_id)
        rebuilt = await caught_up(http, event_id)
        if rebuilt == live:
            break
        live = rebuilt
    assert rebuilt == live
    assert applied == json.loads(rebuilt)["as_of_seq"]


@asynccontextmanager
async def without_projector(servers: EmbeddedServers) -> AsyncIterator[Services]:
    """The system in this process, its worker projecting nothing: the test drives it."""
    settings = make_settings(servers.redis_url, servers.database_url, worker_projector="off")
    async with open_services(settings) as running:
        yield running


async def a_sale(services: Services, client: BookingClient) -> str:
    """An event with two bookings, one cancelled, one ticket let in; its id."""
    created = await client.create_event(event_body())
    first = await buy_in(client, created.waitroom_url, 2, "A")
    second = await buy_in(client, created.waitroom_url, 3, "GA")
    await client.cancel(first.id, new_key("whole"))
    key = await client.create_staff_key(created.id, "Main")
    await client.checkin(key.key, second.tickets[0].code, "Main")
    return created.id


class Killed(Exception):
    """A projector dying."""


async def test_a_projector_dying_before_its_commit_counts_nothing_twice(
    servers: EmbeddedServers,
) -> None:
    """Entries applied by a projector that dies before its commit are not counted; the next
    projector applies them once: the report equals the tables."""
    async with without_projector(servers) as services, admin_client(services) as client:
        event_id = await a_sale(services, client)
        with pytest.raises(Killed):
            async with services.pg.readmodels.claim(event_id) as tx:
                assert tx is not None
                assert await apply_next(tx, 1000)
                raise Killed
        after_crash = await client.report(event_id)
        assert after_crash.as_of_seq == 0 and after_crash.totals.bookings == 0
        while await project_once(services.pg, event_id=event_id):
            pass
        report = await client.report(event_id)
        assert report.as_of_seq == report.log_seq
        expected = await system_of_record(services, event_id)
        assert {name: getattr(report.totals, name) for name in expected} == expected
        assert report.totals.bookings == 2 and report.totals.cancellations == 1


async def test_projectors_side_by_side_apply_each_entry_once(servers: EmbeddedServers) -> None:
    """Eight projectors applying one entry per transaction at once (as several workers do):
    one applies an event at a time, so the report equals the tables."""
    async with without_projector(servers) as services, admin_client(services) as client:
        event_id = await a_sale(services, client)
        policy = ProjectorPolicy(batch_entries=1)
        applied: list[int] = []

        async def projector() -> None:
            while True:
                n = await project_once(services.pg, policy, event_id=event_id)
                applied.append(n)
                report = await client.report(event_id)
                if report.as_of_seq == report.log_seq:
                    return
                if n == 0:
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(projector)
        report = await client.report(event_id)
        assert sum(applied) == report.log_seq
        expected = await system_of_record(services, event_id)
        assert {name: getattr(report.totals, name) for name in expected} == expected


async def test_the_projector_takes_the_event_waiting_longest_first(
    servers: EmbeddedServers,
) -> None:
    """Events behind their logs are applied oldest waiting entry first, whatever order their
    cursors were created or last moved in."""
    async with without_projector(servers) as services, admin_client(services) as client:
        events = [(await client.create_event(event_body())).id for _ in range(3)]
        while await project_once(services.pg):  # every event's read models up to date
            pass
        for event_id in reversed(events):  # the last event's entry waits longest
            await services.pg.log.append(
                [(event_id, "sale_paused", SaleStatePayload(state="paused"), None)]
            )

        async def applied() -> list[int]:
            return [
                int(
                    await pg_value(
                        services,
                        "SELECT applied_seq FROM read_model_cursors WHERE event_id = $1",
                        event_id,
                    )
                )
                for event_id in events
            ]

        order = []
        for _ in events:
            before = await applied()
            assert await project_once(services.pg) == 1
            after = await applied()
            [moved] = [events[i] for i in range(len(events)) if after[i] != before[i]]
            order.append(moved)
        assert order == list(reversed(events))


async def test_the_report_needs_the_admin_and_an_event(
    services: Services, client: BookingClient
) -> None:
    """No admin key: 401; an unknown event: 404."""
    created = await client.create_event(event_body())
    async with BookingClient(services.http_url) as anonymous:
        with pytest.raises(ApiError) as refused:
            await anonymous.report(created.id)
    assert refused.value.status == 401
    with pytest.raises(ApiError) as missing:
        await client.report("nosuchevent")
    assert missing.value.status == 404


async def test_booking_replay_rebuilds_the_report_and_refuses_an_event_without_a_log(
    services: Services, client: BookingClient, http: httpx.AsyncClient
) -> None:
    """``booking replay --event E`` (the command, in its own process) rebuilds the same
    report and says how many entries it applied; an event with no log is exit 1, one line."""
    created = await client.create_event(event_body())
    await buy_in(client, created.waitroom_url, 2, "GA")
    live = await caught_up(http, created.id)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": services.settings.database_url or "",
        "REDIS_URL": services.settings.redis_url or "",
    }
    replayed = await anyio.run_process(
        [sys.executable, "-m", "api.cli", "replay", "--event", created.id],
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr.decode()
    applied = json.loads(live)["as_of_seq"]
    assert f"replayed {applied} entries of event {created.id}" in replayed.stdout.decode()
    assert await caught_up(http, created.id) == live
    missing = await anyio.run_process(
        [sys.executable, "-m", "api.cli", "replay", "--event", "nosuchevent"],
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert missing.returncode == 1
    assert "has no event log entries" in missing.stderr.decode()
