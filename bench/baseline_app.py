"""The row-locking baseline: what most teams write first, to compare the engine with.

A minimal Starlette app on hypercorn over PostgreSQL alone: a hold picks free
seats with ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks them held; a payment
marks them sold and inserts the booking, one transaction each. No waiting room,
no Redis, no batching.

This module uses asyncpg directly although only ``storage/`` may: it is a
comparison harness, not part of the product, and its point is to be the plain
driver-per-request code the engine is measured against.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["SCHEMA", "create_app", "reset_event"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_seats (
    event_id text NOT NULL,
    seat integer NOT NULL,
    status text NOT NULL DEFAULT 'free',
    hold_id text,
    PRIMARY KEY (event_id, seat)
);
CREATE INDEX IF NOT EXISTS baseline_seats_free ON baseline_seats (event_id, seat)
    WHERE status = 'free';
CREATE TABLE IF NOT EXISTS baseline_bookings (
    id text PRIMARY KEY,
    event_id text NOT NULL,
    hold_id text NOT NULL UNIQUE,
    seats integer[] NOT NULL
);
"""


class HoldBody(msgspec.Struct, frozen=True):
    """Hold ``quantity`` seats of ``event_id``."""

    event_id: str
    quantity: int


_json = msgspec.json.Encoder()


def _reply(body: Any, status: int = 200) -> Response:
    return Response(_json.encode(body), status, media_type="application/json")


async def reset_event(pool: Any, event_id: str, seats: int) -> None:
    """Create (or refill) an event's seats, all free."""
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
        await conn.execute("DELETE FROM baseline_seats WHERE event_id = $1", event_id)
        await conn.execute("DELETE FROM baseline_bookings WHERE event_id = $1", event_id)
        await conn.copy_records_to_table(
            "baseline_seats",
            records=[(event_id, s, "free", None) for s in range(1, seats + 1)],
            columns=["event_id", "seat", "status", "hold_id"],
        )


def create_app(database_url: str, *, pool_size: int = 20) -> Starlette:
    """The baseline app: POST /hold, POST /pay/{hold_id}."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(database_url, min_size=4, max_size=pool_size)
        async with state["pool"].acquire() as conn:
            await conn.execute(SCHEMA)
        yield
        await state["pool"].close()

    async def hold(request: Request) -> Response:
        body = msgspec.json.decode(await request.body(), type=HoldBody)
        hold_id = secrets.token_hex(8)
        async with state["pool"].acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                UPDATE baseline_seats SET status = 'held', hold_id = $3
                WHERE (event_id, seat) IN (
                    SELECT event_id, seat FROM baseline_seats
                    WHERE event_id = $1 AND status = 'free'
                    ORDER BY seat LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING seat
                """,
                body.event_id,
                body.quantity,
                hold_id,
            )
        if not rows:
            return _reply({"error": "sold_out"}, 409)
        return _reply({"hold_id": hold_id, "seats": [r["seat"] for r in rows]})

    async def pay(request: Request) -> Response:
        hold_id = request.path_params["hold_id"]
        async with state["pool"].acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE baseline_seats SET status = 'sold' WHERE hold_id = $1 AND status = 'held' "
                "RETURNING event_id, seat",
                hold_id,
            )
            if not rows:
                return _reply({"error": "no_hold"}, 409)
            booking = secrets.token_hex(8)
            await conn.execute(
                "INSERT INTO baseline_bookings (id, event_id, hold_id, seats) VALUES ($1, $2, $3, $4)",
                booking,
                rows[0]["event_id"],
                hold_id,
                [r["seat"] for r in rows],
            )
        return _reply({"id": booking})

    routes = [
        Route("/hold", hold, methods=["POST"]),
        Route("/pay/{hold_id}", pay, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
