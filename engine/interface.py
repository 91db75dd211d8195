"""The engine's one face: what the edges (HTTP, the waiting room's WebSocket) call.

Each domain concept is owned end to end by one module, and this object holds
one of each, built over the stores and started in the caller's task group by
:func:`open_engine`:

- ``catalog``   event specs (``engine/catalog.py``)
- ``sales``     an event's sale: status, pause/resume/close, caps, audit, readiness
                (``engine/sales.py``)
- ``holds``     hold ids, the offer a client sees, who may pay (``engine/holds.py``)
- ``checkout``  paying for a hold (``engine/checkout.py``)
- ``bookings``  what a paid hold became (``engine/bookings.py``)
- ``cancellations``  cancelling bookings, refunds, seats back on sale
                (``engine/cancellation.py``)
- ``checkin``   staff keys and tickets scanned at the door (``engine/checkin.py``)
- ``tickets``   the buyer's tickets: signed codes, QR codes, the PDF (``engine/tickets.py``)
- ``webhooks``  integrators' URLs for an event's log (``engine/webhooks.py``; the relay
                that sends them is ``engine/eventlog.py``)
- ``reports``   an event's report, read from the read models the worker's projector
                builds from the log (``engine/readmodels.py``)

The waiting line itself (joins, places, outcomes) is ``waitroom.line.WaitingLine``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from engine.bookings import Bookings
from engine.cancellation import Cancellations
from engine.catalog import EventCatalog
from engine.checkin import Checkin
from engine.checkout import Checkout
from engine.holds import Holds
from engine.payments import PaymentGateway
from engine.readmodels import Reports
from engine.sales import Sales
from engine.ticket_codes import TicketCodes
from engine.tickets import Tickets
from engine.webhooks import Webhooks
from plumbing.clock import Clock
from storage.pg_store import PgStore
from storage.redis_store import RedisStore
from waitroom.tokens import TokenSigner

__all__ = ["Engine", "open_engine"]


@dataclass(frozen=True)
class Engine:
    """The engine's interface, one part per domain concept."""

    catalog: EventCatalog
    sales: Sales
    holds: Holds
    checkout: Checkout
    bookings: Bookings
    cancellations: Cancellations
    checkin: Checkin
    tickets: Tickets
    webhooks: Webhooks
    reports: Reports


@asynccontextmanager
async def open_engine(
    redis: RedisStore,
    pg: PgStore,
    signer: TokenSigner,
    clock: Clock,
    gateway: PaymentGateway,
    codes: TicketCodes,
    *,
    payment_window_s: float,
    gateway_timeout_s: float,
    refund_retry_max_s: float = 60.0,
    booking_token_ttl_s: int,
) -> AsyncIterator[Engine]:
    """The engine over these stores, its batchers running for the duration of the block."""
    catalog = EventCatalog(redis, pg)
    bookings = Bookings(pg)
    checkout = Checkout(
        redis,
        pg,
        catalog,
        bookings,
        gateway,
        clock,
        codes,
        payment_window_s=payment_window_s,
        gateway_timeout_s=gateway_timeout_s,
        booking_token_ttl_s=booking_token_ttl_s,
    )
    engine = Engine(
        catalog=catalog,
        sales=Sales(redis, pg, catalog, clock),
        holds=Holds(catalog, signer, clock, payment_window_s=payment_window_s),
        checkout=checkout,
        bookings=bookings,
        cancellations=Cancellations(
            redis,
            pg,
            catalog,
            bookings,
            gateway,
            clock,
            gateway_timeout_s=gateway_timeout_s,
            retry_max_s=refund_retry_max_s,
        ),
        checkin=Checkin(pg, catalog),
        tickets=Tickets(codes, catalog),
        webhooks=Webhooks(pg, catalog),
        reports=Reports(pg, catalog),
    )
    async with anyio.create_task_group() as tg:
        for batcher in (checkout.begin, checkout.claim, checkout.commit, checkout.confirm):
            await tg.start(batcher.run)
        try:
            yield engine
        finally:
            tg.cancel_scope.cancel()
