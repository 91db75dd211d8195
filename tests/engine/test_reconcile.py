"""Reconciliation: bookings durable in PostgreSQL end up sold in Redis after crashes and restarts."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest

from api.settings import SANDBOX_API_KEY, Settings
from api.wiring import Roles, open_services
from engine.audit import audit_event
from engine.bookings import Bookings
from engine.catalog import EventCatalog
from engine.checkout import Checkout, PaymentRequest
from engine.events import EventSpec, RowSpec, SectionSpec
from engine.payments import PaymentGateway, SandboxGateway
from engine.reconcile import reconcile, run_reconciler
from engine.ticket_codes import TicketCodes
from plumbing.batcher import Batcher
from storage.bridge import open_bridge
from storage.embedded import EmbeddedServers, RedisServer
from storage.pg_store import PgStore, open_pg_store
from storage.redis_store import JoinRequest, PaidHold, RedisStore, open_redis_store
from storage.stripe_gateway import StripeGateway
from tests.api.helpers import gateway_ledger

pytestmark = pytest.mark.anyio

HOLD_S = 60
WINDOW_S = 30.0


class ManualClock:
    """Wall time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = int(datetime.now(UTC).timestamp() * 1000)  # ms since the epoch

    def now_ms(self) -> int:
        """The current (test) time, ms since the epoch."""
        return self.now


@dataclass
class Engine:
    """Stores, catalog and checkout over the given servers, on a manual clock."""

    redis: RedisStore
    pg: PgStore
    catalog: EventCatalog
    checkout: Checkout
    clock: ManualClock

    async def sale_with_one_hold(self, seats: int = 4) -> tuple[str, int]:
        """An open event of one row, one client joined and holding 2 seats: (event id, seq)."""
        spec = EventSpec(
            name="reconcile",
            opens_at=datetime.now(UTC) - timedelta(minutes=1),
            sections=[SectionSpec(id="A", price_cents=1_000, rows=[RowSpec("1", seats)])],
            hold_seconds=HOLD_S,
            max_active_holds=10,
        )
        event_id = await self.catalog.create(spec)
        [joined] = await self.redis.join([JoinRequest(event_id, "c1", 2, "")], self.clock.now)
        summary = await self.redis.admit(event_id, self.clock.now, 10)
        assert summary.admitted == 1
        return event_id, joined.seq

    async def pay_but_crash_before_confirm(self, event_id: str, seq: int) -> None:
        """Run a payment and cancel it once its booking is durable, before Redis confirms it."""
        req = PaymentRequest(event_id, seq, "idem-1", "tok_visa")

        committed = anyio.Event()

        async def never_confirm(paid: list[PaidHold]) -> list[str]:
            committed.set()  # the booking is durable; the process dies here
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        real_confirm = self.checkout.confirm
        self.checkout.confirm = Batcher(never_confirm, name="confirm_paid")
        async with anyio.create_task_group() as tg:
            for batcher in (
                self.checkout.begin,
                self.checkout.claim,
                self.checkout.commit,
                self.checkout.confirm,
            ):
                await tg.start(batcher.run)
            tg.start_soon(self.checkout.pay, req)
            with anyio.fail_after(10):
                await committed.wait()
            tg.cancel_scope.cancel()
        assert await self.pg.booking_for_key(req.scoped_key) is not None
        self.checkout.confirm = real_confirm

    async def pay(self, event_id: str, seq: int) -> str:
        """A whole payment; the booking id."""
        async with anyio.create_task_group() as tg:
            for batcher in (
                self.checkout.begin,
                self.checkout.claim,
                self.checkout.commit,
                self.checkout.confirm,
            ):
                await tg.start(batcher.run)
            booking = await self.checkout.pay(PaymentRequest(event_id, seq, "idem-1", "tok_visa"))
            tg.cancel_scope.cancel()
        return booking.id


@asynccontextmanager
async def open_engine(
    redis_url: str, database_url: str, gateway: PaymentGateway | None = None
) -> AsyncIterator[Engine]:
    """An Engine over these servers, paying through ``gateway`` (default: in-process)."""
    clock = ManualClock()
    async with (
        open_bridge() as bridge,
        open_redis_store(redis_url, bridge) as redis,
        open_pg_store(database_url, bridge) as pg,
    ):
        await pg.migrate()
        catalog = EventCatalog(redis, pg)
        checkout = Checkout(
            redis,
            pg,
            catalog,
            Bookings(pg),
            gateway or SandboxGateway(),
            clock,
            TicketCodes(bytes(32)),
            payment_window_s=WINDOW_S,
            gateway_timeout_s=5,
            booking_token_ttl_s=3_600,
        )
        yield Engine(redis, pg, catalog, checkout, clock)


@pytest.fixture
async def engine(servers: EmbeddedServers) -> AsyncIterator[Engine]:
    """An Engine over the session's servers."""
    async with open_engine(servers.redis_url, servers.database_url) as running:
        yield running


async def assert_settled(e: Engine, event_id: str, sold: int) -> None:
    """The audit passes with PostgreSQL = Redis, and ``sold`` seats are sold in both."""
    audit = await audit_event(e.redis, e.pg, event_id, settled=True)
    assert audit.problems == []
    assert (audit.sold, audit.sold_in_postgres) == (sold, sold)


async def test_crash_between_commit_and_confirm_is_sold(engine: Engine) -> None:
    """A payment that died after its commit leaves a paying hold; reconciliation sells it."""
    event_id, seq = await engine.sale_with_one_hold()
    await engine.pay_but_crash_before_confirm(event_id, seq)
    ticket = await engine.redis.ticket(event_id, seq)
    assert ticket is not None and ticket.status == "paying"

    report = await reconcile(engine.redis, engine.pg, engine.clock, event_ids=[event_id])
    assert report.results["sold"] == 1
    ticket = await engine.redis.ticket(event_id, seq)
    assert ticket is not None and ticket.status == "confirmed"
    # The sweep, long after the payment window, has nothing to release.
    engine.clock.now += int(10 * WINDOW_S * 1000)
    assert (await engine.redis.expire(event_id, engine.clock.now, 100)).released == 0
    await assert_settled(engine, event_id, 2)


async def test_booking_released_by_the_sweep_takes_its_free_seats_back(engine: Engine) -> None:
    """A booked hold the sweep released (commit outlived the window) is sold again while its seats are free."""
    event_id, seq = await engine.sale_with_one_hold()
    await engine.pay_but_crash_before_confirm(event_id, seq)
    engine.clock.now += int(WINDOW_S * 1000) + 1
    assert (await engine.redis.expire(event_id, engine.clock.now, 100)).released == 1

    report = await reconcile(engine.redis, engine.pg, engine.clock, event_ids=[event_id])
    assert report.results["retaken"] == 1
    await assert_settled(engine, event_id, 2)
    again = await reconcile(engine.redis, engine.pg, engine.clock, event_ids=[event_id])
    assert dict(again.results) == {"confirmed": 1}


async def test_conflict_is_logged_once_and_nothing_is_sold_twice(engine: Engine) -> None:
    """Seats of a released booking that went to the next client are a logged conflict, never resold."""
    event_id, seq = await engine.sale_with_one_hold(seats=2)
    await engine.pay_but_crash_before_confirm(event_id, seq)
    engine.clock.now += int(WINDOW_S * 1000) + 1
    await engine.redis.expire(event_id, engine.clock.now, 100)
    await engine.redis.join([JoinRequest(event_id, "c2", 2, "")], engine.clock.now)
    assert (await engine.redis.admit(event_id, engine.clock.now, 10)).admitted == 1

    for _ in range(2):
        report = await reconcile(engine.redis, engine.pg, engine.clock, event_ids=[event_id])
        assert report.results["conflict:seats"] == 1
    conflicts = await engine.pg.conflicts(event_id)
    assert [(c["hold_id"], c["reason"], c["refund_needed"]) for c in conflicts] == [
        (f"{event_id}.{seq}", "seats", True)
    ]
    audit = await audit_event(engine.redis, engine.pg, event_id, settled=False)
    assert (audit.oversold, audit.sold, audit.held) == (0, 0, 2)


async def test_a_conflict_is_refunded_by_the_worker_with_nobody_asking(
    servers: EmbeddedServers, sandbox_gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A paid booking whose seats went to the next client cannot stand: the worker's
    reconciliation at start cancels it and refunds its charge through the cancellation path.
    The sandbox gateway's ledger shows the one refund (a second worker refunds nothing more),
    the booking is cancelled in PostgreSQL, and the other client keeps the seats."""
    gateway = StripeGateway(SANDBOX_API_KEY, api_base=sandbox_gateway, sandbox=True)
    try:
        async with open_engine(servers.redis_url, servers.database_url, gateway) as engine:
            event_id, seq = await engine.sale_with_one_hold(seats=2)
            before = await gateway_ledger(sandbox_gateway)
            await engine.pay_but_crash_before_confirm(event_id, seq)
            engine.clock.now += int(WINDOW_S * 1000) + 1
            await engine.redis.expire(event_id, engine.clock.now, 100)
            await engine.redis.join([JoinRequest(event_id, "c2", 2, "")], engine.clock.now)
            assert (await engine.redis.admit(event_id, engine.clock.now, 10)).admitted == 1
            booking_id = await engine.pg.booking_for_key(f"{event_id}.{seq}/idem-1")
            assert booking_id is not None

            settings = Settings(
                redis_url=servers.redis_url,
                database_url=servers.database_url,
                metrics_port=0,
                reconcile_interval_s=3600,
                stripe_api_base=sandbox_gateway,
            )
            for _ in range(2):  # the reconciliation at start of two workers, one after the other
                async with open_services(settings, Roles(api=False, worker=True)):
                    pass
            ledger = await gateway_ledger(sandbox_gateway)
            moved = {k: ledger[k] - before[k] for k in ledger}
            assert moved == {
                "charged_cents": 2_000,
                "refunded_cents": 2_000,
                "balance_cents": 0,
                "charges": 1,
                "refunds": 1,
            }
            booking = await Bookings(engine.pg).get(booking_id)
            assert booking.status == "cancelled"
            assert not any(t.live for t in booking.tickets)
            conflicts = await engine.pg.conflicts(event_id)
            assert [c["booking_id"] for c in conflicts] == [booking_id]
            other = await engine.redis.ticket(event_id, seq + 1)
            assert other is not None and (other.status, other.seats) == ("held", [1, 2])
            audit = await audit_event(engine.redis, engine.pg, event_id, settled=False)
            assert (audit.oversold, audit.sold, audit.held, audit.sold_in_postgres) == (0, 0, 2, 0)
            # Later passes find the refunded booking's seats another ticket's: no alarm.
            caplog.clear()
            report = await reconcile(engine.redis, engine.pg, engine.clock, event_ids=[event_id])
            assert (dict(report.returns), report.conflicts) == ({"conflict:booking": 1}, 0)
            assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    finally:
        await gateway.aclose()


async def test_worker_reconciles_when_it_starts(servers: EmbeddedServers, engine: Engine) -> None:
    """A worker process starting after the crash sells the booked seats before admitting anyone."""
    event_id, seq = await engine.sale_with_one_hold()
    await engine.pay_but_crash_before_confirm(event_id, seq)
    settings = Settings(
        redis_url=servers.redis_url,
        database_url=servers.database_url,
        metrics_port=0,
        reconcile_interval_s=3600,
        stripe_api_base=os.environ["BOOKING_STRIPE_API_BASE"],
    )
    async with open_services(settings, Roles(api=False, worker=True)):
        ticket = await engine.redis.ticket(event_id, seq)
        assert ticket is not None and ticket.status == "confirmed"
    await assert_settled(engine, event_id, 2)


@pytest.mark.parametrize(
    ("age_s", "repaired"),
    [
        (10, True),
        (0, False),  # younger than SETTLE_S: its own checkout is confirming it
        (1_200, False),  # older than the window
    ],
)
async def test_periodic_passes_read_recent_bookings(
    engine: Engine, age_s: int, repaired: bool
) -> None:
    """After the pass at start, each pass reads the bookings of the last window, except
    those young enough that their own checkout is still confirming them."""
    later = ManualClock()  # the reconciler's clock: the booking is ``age_s`` old to it
    later.now += age_s * 1000
    async with anyio.create_task_group() as tg:
        await tg.start(
            partial(run_reconciler, engine.redis, engine.pg, later, interval_s=0.05, window_s=600)
        )
        event_id, seq = await engine.sale_with_one_hold()
        await engine.pay_but_crash_before_confirm(event_id, seq)
        await anyio.sleep(0.5)  # ten passes
        tg.cancel_scope.cancel()
    ticket = await engine.redis.ticket(event_id, seq)
    assert ticket is not None
    assert ticket.status == ("confirmed" if repaired else "paying")  # as the crash left it


async def test_redis_restart_that_lost_the_confirmation(servers: EmbeddedServers) -> None:
    """Redis crashing and restarting without its last writes gets the booked seats sold again."""
    data_dir = Path(tempfile.mkdtemp(prefix="booking-redis-"))
    redis_server = RedisServer(data_dir)
    try:
        url = redis_server.start()
        async with open_engine(url, servers.database_url) as engine:
            event_id, seq = await engine.sale_with_one_hold()
            await anyio.sleep(1.5)  # appendfsync everysec: the hold is on disk now
            saved = redis_server.aof.read_bytes()
            await engine.pay(event_id, seq)
            await assert_settled(engine, event_id, 2)
        # Crash, and come back with only what was on disk before the payment.
        redis_server.kill()
        redis_server.aof.write_bytes(saved)
        redis_server.start()
        async with open_engine(url, servers.database_url) as engine:
            ticket = await engine.redis.ticket(event_id, seq)
            assert ticket is not None and ticket.status == "held"
            report = await reconcile(engine.redis, engine.pg, engine.clock, event_ids=[event_id])
            assert report.results["sold"] == 1
            await assert_settled(engine, event_id, 2)
    finally:
        redis_server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_reconcile_command_sells_booked_seats(
    servers: EmbeddedServers, engine: Engine
) -> None:
    """`booking reconcile` run by hand does the same repair and prints what it did."""
    event_id, seq = await engine.sale_with_one_hold()
    await engine.pay_but_crash_before_confirm(event_id, seq)
    done = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "api.cli",
            "reconcile",
            "--redis-url",
            servers.redis_url,
            "--database-url",
            servers.database_url,
        ],
        check=False,
    )
    # Exit 1 only when some booking of the shared test servers is a conflict.
    assert done.returncode in (0, 1), done.stderr.decode()
    assert b"bookings checked" in done.stdout
    ticket = await engine.redis.ticket(event_id, seq)
    assert ticket is not None and ticket.status == "confirmed"
    await assert_settled(engine, event_id, 2)
