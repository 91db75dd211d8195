"""The sandbox gateway's state in SQLite: payment intents, refunds, and the answers kept for
idempotency keys (``api/gateway.py`` serves them as a subset of Stripe's API)."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

__all__ = ["DB_FILE", "SandboxStore"]

#: The file of the sandbox's state in its data directory.
DB_FILE = "gateway.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id TEXT PRIMARY KEY,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    created INTEGER NOT NULL,
    amount_received INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    last_payment_error TEXT
);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    payment_intent TEXT NOT NULL,
    amount INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    api_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (api_key, idempotency_key)
);
"""

#: Answers not kept for their idempotency key (the request did not run, as Stripe's; or
#: its caller went away: a timeout card).
_NOT_KEPT = (401, 409, 429, 504)


class SandboxStore:
    """The sandbox's state in SQLite (one process writes it; every call is one transaction)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def intent(self, intent_id: str) -> dict[str, Any] | None:
        """The intent as Stripe shows it, or None."""
        row = self.db.execute("SELECT * FROM intents WHERE id = ?", (intent_id,)).fetchone()
        if row is None:
            return None
        return {
            "id": row["id"],
            "object": "payment_intent",
            "amount": row["amount"],
            "amount_received": row["amount_received"],
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "created": row["created"],
            "currency": row["currency"],
            "last_payment_error": json.loads(row["last_payment_error"] or "null"),
            "livemode": False,
            "metadata": json.loads(row["metadata"]),
            "payment_method_types": ["card"],
            "status": row["status"],
        }

    def create_intent(self, amount: int, currency: str, metadata: dict[str, str]) -> str:
        """A new unconfirmed intent's id."""
        intent_id = "pi_sbx_" + secrets.token_hex(12)
        self.db.execute(
            "INSERT INTO intents (id, amount, currency, status, created, metadata) "
            "VALUES (?, ?, ?, 'requires_payment_method', ?, ?)",
            (intent_id, amount, currency, int(time.time()), json.dumps(metadata)),
        )
        return intent_id

    def set_status(
        self, intent_id: str, status: str, *, received: int = 0, error: Any = None
    ) -> None:
        """Move an intent to ``status``."""
        self.db.execute(
            "UPDATE intents SET status = ?, amount_received = ?, last_payment_error = ? "
            "WHERE id = ?",
            (status, received, json.dumps(error) if error else None, intent_id),
        )

    def refunded(self, intent_id: str) -> int:
        """Cents refunded of an intent so far."""
        row = self.db.execute(
            "SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_intent = ?", (intent_id,)
        ).fetchone()
        return int(row[0])

    def add_refund(self, intent_id: str, amount: int) -> dict[str, Any]:
        """Record a refund; Stripe's view of it."""
        refund_id = "re_sbx_" + secrets.token_hex(12)
        created = int(time.time())
        self.db.execute(
            "INSERT INTO refunds (id, payment_intent, amount, created) VALUES (?, ?, ?, ?)",
            (refund_id, intent_id, amount, created),
        )
        return {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "created": created,
            "payment_intent": intent_id,
            "status": "succeeded",
        }

    def answer(self, api_key: str, key: str) -> tuple[str, int, bytes] | None:
        """The kept answer of an idempotency key: (request fingerprint, status, body)."""
        row = self.db.execute(
            "SELECT request, status, body FROM answers WHERE api_key = ? AND idempotency_key = ?",
            (api_key, key),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def keep(self, api_key: str, key: str, request: str, status: int, body: bytes) -> None:
        """Keep the answer of an idempotency key."""
        self.db.execute(
            "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)",
            (api_key, key, request, status, body),
        )

    def ledger(self) -> dict[str, int]:
        """Charged, refunded and charged minus refunded, cents; counts of each."""
        charged, charges = self.db.execute(
            "SELECT coalesce(sum(amount_received), 0), count(*) FROM intents "
            "WHERE status = 'succeeded'"
        ).fetchone()
        refunded, refunds = self.db.execute(
            "SELECT coalesce(sum(amount), 0), count(*) FROM refunds"
        ).fetchone()
        return {
            "charged_cents": charged,
            "refunded_cents": refunded,
            "balance_cents": charged - refunded,
            "charges": charges,
            "refunds": refunds,
        }
