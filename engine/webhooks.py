"""Webhooks: integrators' URLs per event, registered, listed, removed and redelivered by
the admin. Sending them is the relay's (``engine/eventlog.py``)."""

from __future__ import annotations

import secrets

from engine.catalog import EventCatalog
from engine.errors import InvalidRequest, NotFound
from engine.ids import is_valid_id
from storage.log_events import Actor
from storage.pg_eventlog import WebhookRow
from storage.pg_store import PgStore
from storage.webhook_client import unsendable

__all__ = ["WebhookRow", "Webhooks"]

#: Longest URL accepted.
MAX_URL = 2000


class Webhooks:
    """An event's webhooks."""

    def __init__(self, pg: PgStore, catalog: EventCatalog) -> None:
        self._pg = pg  # webhooks and their queues
        self._catalog = catalog  # events exist

    async def register(
        self, event_id: str, url: str, actor: Actor | None = None, *, batch: bool = False
    ) -> WebhookRow:
        """Register ``url`` for the event's log (``batch``: sent its entries in batches);
        the answer holds its secret, never again."""
        await self._catalog.get(event_id)
        if len(url) > MAX_URL:
            raise InvalidRequest("url must be an absolute http(s) URL of at most 2000 characters")
        if (why := unsendable(url)) is not None:
            raise InvalidRequest(f"url cannot be sent to: {why}")
        webhook_id = "wh" + secrets.token_hex(6)
        secret = "whsec_" + secrets.token_urlsafe(32)
        return await self._pg.log.add_webhook(webhook_id, event_id, url, secret, actor, batch=batch)

    async def list(self, event_id: str) -> list[WebhookRow]:
        """The event's webhooks, oldest first (without secrets)."""
        await self._catalog.get(event_id)
        return await self._pg.log.webhooks(event_id)

    async def remove(
        self, event_id: str, webhook_id: str, actor: Actor | None = None
    ) -> WebhookRow:
        """Stop sending to a webhook; NotFound if the event has no such webhook."""
        await self._catalog.get(event_id)
        row = None
        if is_valid_id(webhook_id):
            row = await self._pg.log.remove_webhook(event_id, webhook_id, actor)
        if row is None:
            raise NotFound(f"no webhook {webhook_id!r} for event {event_id!r}")
        return row

    async def redeliver(
        self, event_id: str, webhook_id: str, actor: Actor | None = None
    ) -> WebhookRow:
        """Send a dead webhook's queue again, in order; NotFound if there is no such webhook."""
        await self._catalog.get(event_id)
        row = None
        if is_valid_id(webhook_id):
            row = await self._pg.log.redeliver_webhook(event_id, webhook_id, actor)
        if row is None:
            raise NotFound(f"no webhook {webhook_id!r} for event {event_id!r}")
        return row
