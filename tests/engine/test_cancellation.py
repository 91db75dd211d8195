"""Cancellations against real Redis and PostgreSQL: refunds made once, seats back on sale with
free + held + sold = capacity, and nothing half-done when the gateway or PostgreSQL fails."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from prometheus_client import REGISTRY

from engine.audit import audit_event
from engine.bookings import Booking, BookingStatus
from engine.cancellation import CancellationStatus, run_cancellations
from engine.checkout import PaymentRequest
from engine.errors import (
    AlreadyCancelled,
    KeyReused,
    RefundNotAllowed,
    TicketBeingCancelled,
    TicketCheckedIn,
    TicketNotInBooking,
    TicketNotLive,
    Unprocessable,
)
from engine.events import EventSpec, SectionSpec
from engine.interface import Engine, open_engine
from engine.payments import GatewayUnavailable, Refund, SandboxGateway
from engine.reconcile import reconcile
from engine.ticket_codes import TicketCodes
from plumbing.clock import WallClock
from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers, PostgresServer
from storage.errors import StorageUnavailable
from storage.pg_records import NewCancellation
from storage.pg_store import PgStore, open_pg_store
from storage.records import EventState
from storage.redis_store import JoinRequest, open_redis_store
from waitroom.tokens import TokenSigner

pytestmark = pytest.mark.anyio

PRICE = 1_500


@dataclass
class Gateway(SandboxGateway):
    """The sandbox gateway, with refunds that can be made unreachable, and a hook run
    when a refund is asked for (before it is made)."""

    down: bool = False
    refund_calls: int = 0
    on_refund: list[object] = field(default_factory=list)

    async def refund(
        self, *, charge_reference: str, amount_cents: int, idempotency_key: str
    ) -> Refund:
        self.refund_calls += 1
        for hook in self.on_refund:
            assert callable(hook)
            await anyio.to_thread.run_sync(hook)
        if self.down:
            raise GatewayUnavailable("the payment provider is unreachable")
        return await super().refund(
            charge_reference=charge_reference,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
        )


@asynccontextmanager
async def engine_on(
    redis_url: str, database_url: str, gateway: SandboxGateway
) -> AsyncIterator[Engine]:
    """The engine over these servers (migrated), with this gateway."""
    async with (
        open_bridge() as bridge,
        open_redis_store(redis_url, bridge) as redis,
        open_pg_store(database_url, bridge) as pg,
    ):
        await pg.migrate()
        async with open_engine(
            redis,
            pg,
            TokenSigner(b"cancellation-test-secret-0123456789"),
            WallClock(),
            gateway,
            TicketCodes(bytes(range(32))),
            payment_window_s=30,
            gateway_timeout_s=5,
            refund_retry_max_s=0.5,
            booking_token_ttl_s=3_600,
        ) as engine:
            yield engine


async def sell(engine: Engine, *, capacity: int = 6, seats: int = 2, **policy: object) -> Booking:
    """An open event of one general-admission section; one client buys ``seats``."""
    spec = EventSpec(
        name="cancellation",
        opens_at=datetime.now(UTC) - timedelta(minutes=1),
        sections=[SectionSpec(id="GA", price_cents=PRICE, capacity=capacity)],
        max_active_holds=10,
        **policy,  # type: ignore[arg-type]
    )
    event_id = await engine.sales.create(spec)
    return await buy(engine, event_id, seats)


async def buy(engine: Engine, event_id: str, seats: int) -> Booking:
    """One more client joins ``event_id``, is admitted and pays for ``seats``."""
    redis = engine.checkout._redis
    client = "c-" + uuid.uuid4().hex[:8]
    now = WallClock().now_ms()
    [joined] = await redis.join([JoinRequest(event_id, client, seats, "")], now)
    summary = await redis.admit(event_id, now, 10)
    assert summary.admitted == 1, summary
    return await engine.checkout.pay(PaymentRequest(event_id, joined.seq, client, "tok_visa"))


async def seats_of(engine: Engine, event_id: str) -> tuple[int, int, int]:
    """(free, held, sold) of the event in Redis, after checking every invariant holds."""
    audit = await audit_event(engine.checkout._redis, engine.checkout._pg, event_id, settled=True)
    assert audit.ok, audit.problems
    return audit.free, audit.held, audit.sold


async def sql(pg: PgStore, query: str, *args: Any) -> list[Any]:
    """Rows of a statement run straight on the store's pool (on the drivers' loop)."""
    rows: list[Any] = await pg._bridge.call(partial(pg._pool.fetch, query, *args))
    return rows


@pytest.fixture
def gateway() -> Gateway:
    """A sandbox gateway of this test."""
    return Gateway()


@pytest.fixture
async def engine(servers: EmbeddedServers, gateway: Gateway) -> AsyncIterator[Engine]:
    """The engine on the session's servers."""
    assert servers.redis_url and servers.database_url
    async with engine_on(servers.redis_url, servers.database_url, gateway) as running:
        yield running


async def test_a_whole_cancellation_refunds_once_and_frees_the_seats(
    engine: Engine, gateway: Gateway
) -> None:
    """Whole booking: refunded its price, tickets no longer live, the booking cancelled, the
    seats free again in Redis (conserved), one event_log row each step; a replay answers
    the same cancellation and refunds nothing more."""
    booking = await sell(engine, seats=2)
    assert await seats_of(engine, booking.event_id) == (4, 0, 2)
    done = await engine.cancellations.cancel(booking, "k1", None, by_admin=False)
    assert done.status is CancellationStatus.REFUNDED
    assert (done.amount_cents, done.booking_status) == (2 * PRICE, "cancelled")
    assert sorted(done.tickets) == sorted(t.code for t in booking.tickets)
    assert gateway.balance_cents() == 0
    refunded = REGISTRY.get_sample_value(
        "booking_refunded_cents_total", {"event": booking.event_id}
    )
    assert refunded == 2 * PRICE
    after = await engine.bookings.get(booking.id)
    assert after.status is BookingStatus.CANCELLED
    assert not any(t.live for t in after.tickets)
    assert await seats_of(engine, booking.event_id) == (6, 0, 0)

    again = await engine.cancellations.cancel(booking, "k1", None, by_admin=False)
    assert again == done
    assert gateway.balance_cents() == 0 and len(gateway._refunds) == 1
    assert (
        REGISTRY.get_sample_value("booking_refunded_cents_total", {"event": booking.event_id})
        == 2 * PRICE
    )  # counted once
    with pytest.raises(AlreadyCancelled):
        await engine.cancellations.cancel(booking, "k2", None, by_admin=True)
    kinds = await sql(
        engine.checkout._pg,
        "SELECT kind FROM event_log WHERE payload->>'booking_id' = $1 ORDER BY id",
        booking.id,
    )
    assert [k["kind"] for k in kinds] == [
        "booking_confirmed",
        "cancellation_requested",
        "booking_cancelled",
    ]


async def test_a_partial_cancellation_keeps_the_rest_of_the_booking(
    engine: Engine, gateway: Gateway
) -> None:
    """Two of three tickets: their prices refunded, the booking still confirmed with one live
    ticket; a cancelled or foreign ticket is refused; the last one cancels the booking."""
    booking = await sell(engine, seats=3)
    first, second, third = (t.code for t in booking.tickets)
    part = await engine.cancellations.cancel(booking, "p1", [second, first], by_admin=False)
    assert (part.amount_cents, part.booking_status) == (2 * PRICE, "confirmed")
    assert gateway.balance_cents() == PRICE
    assert await seats_of(engine, booking.event_id) == (5, 0, 1)
    live = [t.code for t in (await engine.bookings.get(booking.id)).tickets if t.live]
    assert live == [third]

    with pytest.raises(AlreadyCancelled):
        await engine.cancellations.cancel(booking, "p2", [first], by_admin=False)
    with pytest.raises(TicketNotInBooking):
        await engine.cancellations.cancel(booking, "p3", ["not-a-ticket"], by_admin=False)
    with pytest.raises(KeyReused):
        await engine.cancellations.cancel(booking, "p1", [third], by_admin=False)
    for bad in ([], [third, third]):
        with pytest.raises(Unprocessable):
            await engine.cancellations.cancel(booking, "p4", bad, by_admin=False)
    assert gateway.balance_cents() == PRICE  # nothing refused moved money

    rest = await engine.cancellations.cancel(booking, "p5", None, by_admin=False)
    assert (rest.tickets, rest.booking_status) == ([third], "cancelled")
    assert gateway.balance_cents() == 0
    assert await seats_of(engine, booking.event_id) == (6, 0, 0)


async def test_the_refund_policy_binds_buyers_not_admins(engine: Engine, gateway: Gateway) -> None:
    """No refunds, or a deadline passed: a buyer is refused (nothing changes); an admin
    cancels and refunds anyway. Before the deadline a buyer may."""
    closed = await sell(engine, buyer_refunds=False)
    past = await sell(engine, refund_until=datetime.now(UTC) - timedelta(hours=1))
    future = await sell(engine, refund_until=datetime.now(UTC) + timedelta(hours=1))
    for booking in (closed, past):
        with pytest.raises(RefundNotAllowed):
            await engine.cancellations.cancel(booking, "b", None, by_admin=False)
        assert (await engine.bookings.get(booking.id)).status is BookingStatus.CONFIRMED
        done = await engine.cancellations.cancel(booking, "a", None, by_admin=True)
        assert done.status is CancellationStatus.REFUNDED
    done = await engine.cancellations.cancel(future, "b", None, by_admin=False)
    assert done.status is CancellationStatus.REFUNDED
    assert gateway.balance_cents() == 0


async def test_returned_seats_reopen_a_sold_out_event(engine: Engine) -> None:
    """The last seats sold, the event sold out; a cancellation opens it again (state open,
    new joins taken), and the returned seats go to the next buyer."""
    booking = await sell(engine, capacity=2, seats=2)
    redis = engine.checkout._redis
    now = WallClock().now_ms()
    [late] = await redis.join([JoinRequest(booking.event_id, "late", 1, "")], now)
    await redis.admit(booking.event_id, now, 10)  # told sold out: nothing can come back
    status = await redis.status(booking.event_id)
    assert status is not None and status.state == EventState.SOLD_OUT
    [refused] = await redis.join([JoinRequest(booking.event_id, "refused", 1, "")], now)
    assert refused.seq == 0

    await engine.cancellations.cancel(booking, "k", None, by_admin=True)
    status = await redis.status(booking.event_id)
    assert status is not None and status.state == EventState.OPEN
    assert (await redis.ticket(booking.event_id, late.seq)).status == "sold_out"  # type: ignore[union-attr]
    again = await buy(engine, booking.event_id, 2)
    assert again.status is BookingStatus.CONFIRMED
    assert await seats_of(engine, booking.event_id) == (0, 0, 2)


async def test_the_worker_retries_a_refund_until_the_gateway_is_back(
    engine: Engine, gateway: Gateway
) -> None:
    """Gateway unreachable: the cancellation answers pending and nothing else changes; the
    worker's loop tries again (backing off) and, once the gateway answers, refunds once and
    finishes: tickets cancelled, seats free."""
    booking = await sell(engine, seats=2)
    gateway.down = True
    pending = await engine.cancellations.cancel(booking, "k", None, by_admin=False)
    assert pending.status is CancellationStatus.PENDING
    assert (await engine.bookings.get(booking.id)).status is BookingStatus.CONFIRMED
    assert await seats_of(engine, booking.event_id) == (4, 0, 2)
    pg = engine.checkout._pg
    async with anyio.create_task_group() as tg:
        await tg.start(partial(run_cancellations, engine.cancellations, pg, interval_s=0.1))
        with anyio.fail_after(30):
            while gateway.refund_calls < 3:  # noqa: ASYNC110 (retried while down)
                await anyio.sleep(0.1)
        assert (await pg.cancellation(pending.id)).status == "pending"  # type: ignore[union-attr]
        gateway.down = False
        with anyio.fail_after(30):
            while (await pg.cancellation(pending.id)).status != "done":  # type: ignore[union-attr]  # noqa: ASYNC110
                await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    assert gateway.balance_cents() == 0 and len(gateway._refunds) == 1
    assert (await engine.bookings.get(booking.id)).status is BookingStatus.CANCELLED
    assert await seats_of(engine, booking.event_id) == (6, 0, 0)
    replay = await engine.cancellations.cancel(booking, "k", None, by_admin=False)
    assert replay.status is CancellationStatus.REFUNDED


async def test_reconciliation_frees_the_seats_of_a_cancellation_redis_missed(
    engine: Engine,
) -> None:
    """A crash after the cancellation's transaction, before Redis freed its seats: Redis
    still shows them sold; reconciliation frees them (once: a second pass changes nothing)."""
    booking = await sell(engine, seats=2)
    pg, redis = engine.checkout._pg, engine.checkout._redis
    row = await pg.begin_cancellation(
        NewCancellation("cx" + uuid.uuid4().hex[:16], booking.id, "k", None, by_admin=True)
    )
    assert not isinstance(row, str)
    await pg.finish_cancellation(row.id, "refunded-elsewhere")  # the process dies here
    status = await redis.status(booking.event_id)
    assert status is not None and status.seats.sold == 2

    report = await reconcile(redis, pg, WallClock(), event_ids=[booking.event_id])
    assert report.returns["returned"] == 1
    assert await seats_of(engine, booking.event_id) == (6, 0, 0)
    again = await reconcile(redis, pg, WallClock(), event_ids=[booking.event_id])
    assert again.returns["returned"] == 0 and again.returns["done"] == 1
    assert await seats_of(engine, booking.event_id) == (6, 0, 0)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone, which it may stop and start."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-pg-"))
    server = PostgresServer(data_dir)
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_postgres_down_during_a_cancellation_leaves_nothing_half_done(
    servers: EmbeddedServers, own_postgres: PostgresServer
) -> None:
    """PostgreSQL down when the cancellation comes: refused (unavailable), no money moved,
    seats still sold. PostgreSQL dying during the refund: the cancellation stays pending
    (tickets live, seats sold: the booking whole); once it is back the worker finishes it
    with the same refund, never a second one."""
    assert servers.redis_url
    gateway = Gateway()
    async with engine_on(servers.redis_url, own_postgres.url, gateway) as engine:
        booking = await sell(engine, seats=2)
        pg = engine.checkout._pg

        await anyio.to_thread.run_sync(own_postgres.stop)
        with pytest.raises(StorageUnavailable):
            await engine.cancellations.cancel(booking, "k", None, by_admin=False)
        assert gateway.refund_calls == 0 and gateway.balance_cents() == 2 * PRICE
        await anyio.to_thread.run_sync(own_postgres.start)
        assert await pg.cancellation_for_key(booking.id, "k") is None
        assert await seats_of(engine, booking.event_id) == (4, 0, 2)

        gateway.on_refund.append(own_postgres.stop)  # dies as the refund is made
        with pytest.raises(StorageUnavailable):
            await engine.cancellations.cancel(booking, "k", None, by_admin=False)
        gateway.on_refund.clear()
        assert gateway.balance_cents() == 0  # the refund went through
        await anyio.to_thread.run_sync(own_postgres.start)
        row = await pg.cancellation_for_key(booking.id, "k")
        assert row is not None and row.status == "pending"
        assert (await engine.bookings.get(booking.id)).status is BookingStatus.CONFIRMED
        assert await seats_of(engine, booking.event_id) == (4, 0, 2)

        await sql(  # due now rather than after its backoff
            pg, "UPDATE cancellations SET next_attempt_at = now() WHERE id = $1", row.id
        )
        async with anyio.create_task_group() as tg:
            await tg.start(partial(run_cancellations, engine.cancellations, pg, interval_s=0.1))
            with anyio.fail_after(30):
                while (await pg.cancellation(row.id)).status != "done":  # type: ignore[union-attr]  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
        assert len(gateway._refunds) == 1 and gateway.balance_cents() == 0
        assert (await engine.bookings.get(booking.id)).status is BookingStatus.CANCELLED
        assert await seats_of(engine, booking.event_id) == (6, 0, 0)


async def test_an_event_cancellation_resumes_after_a_crash_and_refunds_each_booking_once(
    engine: Engine, gateway: Gateway
) -> None:
    """Three bookings; the event is cancelled while the gateway is down: the sale closes, each
    booking gets one pending cancellation, the progress says so. The worker dies; another
    starts once the gateway is back and finishes: every booking cancelled and refunded once,
    the seats free, the event still closed, the cancellation done."""
    first = await sell(engine, capacity=9, seats=2)
    event_id = first.event_id
    others = [await buy(engine, event_id, 2), await buy(engine, event_id, 3)]
    gateway.down = True
    started = await engine.cancellations.cancel_event(event_id)
    assert (started.status, started.bookings, started.refunded) == ("running", 3, 0)
    status = await engine.checkout._redis.status(event_id)
    assert status is not None and status.state == EventState.CLOSED
    assert not await engine.cancellations.drive_event(event_id)  # the first worker, then dies
    progress = await engine.cancellations.event_progress(event_id)
    assert (progress.bookings, progress.pending, progress.refunded) == (3, 3, 0)

    gateway.down = False
    pg = engine.checkout._pg
    await sql(pg, "UPDATE cancellations SET next_attempt_at = now() WHERE event_id = $1", event_id)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(run_cancellations, engine.cancellations, pg, interval_s=0.1))
        with anyio.fail_after(30):
            while (await engine.cancellations.event_progress(event_id)).status != "done":  # noqa: ASYNC110
                await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    done = await engine.cancellations.event_progress(event_id)
    assert (done.bookings, done.refunded, done.pending) == (3, 3, 0)
    assert done.refunded_cents == 7 * PRICE
    assert gateway.balance_cents() == 0 and len(gateway._refunds) == 3
    for booking in (first, *others):
        assert (await engine.bookings.get(booking.id)).status is BookingStatus.CANCELLED
    assert await seats_of(engine, event_id) == (9, 0, 0)
    status = await engine.checkout._redis.status(event_id)
    assert status is not None and status.state == EventState.CLOSED
    again = await engine.cancellations.cancel_event(event_id)
    assert again == done


async def test_a_ticket_used_at_the_door_is_never_cancelled(
    engine: Engine, gateway: Gateway
) -> None:
    """A checked-in ticket: naming it is refused (ticket_checked_in); the whole booking
    cancels the others only (the booking stays confirmed with the used one); then nothing is
    left to cancel. Refunds follow the tickets cancelled."""
    booking = await sell(engine, seats=3)
    used, *others = (t.code for t in booking.tickets)
    pg = engine.checkout._pg
    await sql(pg, "UPDATE tickets SET checked_in_at = now() WHERE code = $1", used)
    with pytest.raises(TicketCheckedIn):
        await engine.cancellations.cancel(booking, "a", [used], by_admin=True)
    rest = await engine.cancellations.cancel(booking, "b", None, by_admin=False)
    assert (sorted(rest.tickets), rest.booking_status) == (sorted(others), "confirmed")
    assert gateway.balance_cents() == PRICE
    assert await seats_of(engine, booking.event_id) == (5, 0, 1)
    with pytest.raises(TicketCheckedIn):
        await engine.cancellations.cancel(booking, "c", None, by_admin=True)


async def test_a_ticket_whose_cancellation_is_pending_is_not_let_in(
    engine: Engine, gateway: Gateway
) -> None:
    """A cancellation recorded, its refund retried (the gateway unreachable): the door
    refuses its ticket (cancellation_pending) and lets the booking's other ticket in. Once
    the refund is made the ticket is cancelled (ticket_cancelled), refunded once, and the
    booking keeps the ticket used at the door."""
    booking = await sell(engine, seats=2)
    leaving, staying = (t.code for t in booking.tickets)
    staff = await engine.checkin.create_key(booking.event_id, "Door")
    gateway.down = True
    pending = await engine.cancellations.cancel(booking, "k", [leaving], by_admin=False)
    assert pending.status is CancellationStatus.PENDING
    with pytest.raises(TicketBeingCancelled):
        await engine.checkin.check_in(staff.key, leaving, "Door")
    assert (await engine.checkin.check_in(staff.key, staying, "Door")).code == staying
    pg = engine.checkout._pg
    [row] = await sql(pg, "SELECT checked_in_at FROM tickets WHERE code = $1", leaving)
    assert row["checked_in_at"] is None

    gateway.down = False
    async with anyio.create_task_group() as tg:
        await tg.start(partial(run_cancellations, engine.cancellations, pg, interval_s=0.1))
        with anyio.fail_after(30):
            while (await pg.cancellation(pending.id)).status != "done":  # type: ignore[union-attr]  # noqa: ASYNC110
                await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    with pytest.raises(TicketNotLive):
        await engine.checkin.check_in(staff.key, leaving, "Door")
    assert len(gateway._refunds) == 1 and gateway.balance_cents() == PRICE
    after = await engine.bookings.get(booking.id)
    assert after.status is BookingStatus.CONFIRMED
    assert [t.code for t in after.tickets if t.live] == [staying]
    assert await seats_of(engine, booking.event_id) == (5, 0, 1)


async def test_a_scan_during_the_recording_of_a_cancellation_waits_and_is_refused(
    engine: Engine, servers: EmbeddedServers
) -> None:
    """A cancellation being recorded (its booking's row locked, the pending row written, not
    committed yet) when the ticket is scanned: the scan waits for the recording, then sees
    it and refuses the ticket, which is not let in."""
    booking = await sell(engine, seats=1)
    [code] = (t.code for t in booking.tickets)
    staff = await engine.checkin.create_key(booking.event_id, "Door")
    pg = engine.checkout._pg
    assert servers.database_url is not None
    conn = await pg._bridge.call(asyncpg.connect, servers.database_url)
    refused: list[BaseException] = []

    async def scan() -> None:
        try:
            await engine.checkin.check_in(staff.key, code, "Door")
        except TicketBeingCancelled as exc:
            refused.append(exc)

    try:
        await pg._bridge.call(conn.execute, "BEGIN")
        await pg._bridge.call(
            conn.execute, "SELECT 1 FROM bookings WHERE id = $1 FOR UPDATE", booking.id
        )
        await pg._bridge.call(
            conn.execute,
            "INSERT INTO cancellations (id, booking_id, event_id, idempotency_key, whole, "
            "codes, amount_cents, charge_ref, by_admin, next_attempt_at) VALUES ($1, $2, $3, "
            "'racing', true, $4, $5, '', false, now() + interval '1 hour')",
            "cx" + uuid.uuid4().hex[:12],
            booking.id,
            booking.event_id,
            [code],
            PRICE,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan)
            with anyio.fail_after(20):  # the scan waits for the booking's row
                while not await sql(  # noqa: ASYNC110
                    pg,
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%FOR SHARE%'",
                ):
                    await anyio.sleep(0.05)
            await pg._bridge.call(conn.execute, "COMMIT")
    finally:
        await pg._bridge.call(conn.close)
    assert len(refused) == 1
    [row] = await sql(pg, "SELECT checked_in_at FROM tickets WHERE code = $1", code)
    assert row["checked_in_at"] is None
    # This cancellation was only ever recorded: no worker is to take it up.
    await sql(pg, "UPDATE cancellations SET status = 'refused' WHERE booking_id = $1", booking.id)
