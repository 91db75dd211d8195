"""A PostgreSQL transaction held across calls of the drivers' loop, for the stores whose
work is claimed, done and committed as one step (the relay's and webhooks' batches, the
projector's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import asyncpg

__all__ = ["ACQUIRE_TIMEOUT_S", "Call", "held_transaction"]

#: How a store runs a step on the drivers' loop: ``PgStore._call`` (counted, errors mapped
#: to StorageError).
Call = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]

#: Longest wait for a pooled connection (or its release), s.
ACQUIRE_TIMEOUT_S = 30.0


@asynccontextmanager
async def held_transaction(
    pool: asyncpg.Pool, call: Call, op: str
) -> AsyncIterator[asyncpg.Connection]:
    """A connection of ``pool`` in a transaction: committed if the block ends normally,
    else rolled back (shielded: a cancelled caller still ends it)."""

    async def begin() -> tuple[Any, Any]:
        conn = await pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        tr = conn.transaction()
        try:
            await tr.start()
        except BaseException:
            await pool.release(conn)
            raise
        return conn, tr

    # Shielded: a caller cancelled while the connection is being taken would otherwise
    # drop it on the drivers' loop, never released (and the pool's close waits for it).
    with anyio.CancelScope(shield=True):
        conn, tr = await call(op, begin)

    async def end(commit: bool) -> None:
        try:
            await (tr.commit() if commit else tr.rollback())
        except BaseException:
            conn.terminate()  # its state is unknown: closed rather than reused
            raise
        finally:
            await pool.release(conn, timeout=ACQUIRE_TIMEOUT_S)

    try:
        yield conn
    except BaseException:
        with anyio.CancelScope(shield=True):
            with suppress(Exception):
                await call(op, lambda: end(False))
        raise
    with anyio.CancelScope(shield=True):
        await call(op, lambda: end(True))
