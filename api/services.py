"""The wiring point: build storage, engine, waiting room, realtime and HTTP, run them in one task group."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio

from api.settings import Settings
from engine.admission import AdmissionPolicy
from engine.catalog import EventCatalog
from engine.checkout import Checkout
from engine.payments import PaymentGateway, SandboxGateway
from engine.reconcile import run_reconciler
from engine.worker import run_worker
from plumbing.clock import Clock, WallClock
from realtime.hub import Hub
from realtime.protocol import Heartbeat, encode
from realtime.server import WaitroomHandler
from realtime.session import Heartbeats
from realtime.transport import serve_websockets
from storage.bridge import open_bridge
from storage.pg_store import PgStore, open_pg_store
from storage.redis_store import BucketLimit, RedisStore, open_redis_store
from waitroom.line import JoinLimits, WaitingLine
from waitroom.tokens import TokenSigner

__all__ = ["Roles", "Services", "open_services"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Roles:
    """Which parts this process runs."""

    api: bool = True  # HTTP API + waiting-room WebSocket
    worker: bool = True  # admission and expiry sweep


@dataclass
class Services:
    """Every part of a running process, for the routes and the command line."""

    settings: Settings
    redis: RedisStore
    pg: PgStore
    catalog: EventCatalog
    checkout: Checkout
    line: WaitingLine
    hub: Hub
    signer: TokenSigner
    clock: Clock
    http_port: int = 0
    ws_port: int = 0
    policy: AdmissionPolicy = field(default_factory=AdmissionPolicy)

    def waitroom_url(self, event_id: str) -> str:
        """Where clients of ``event_id`` open their WebSocket."""
        return f"{self.settings.ws_url(self.ws_port)}/v1/events/{event_id}/waitroom"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.settings.host}:{self.http_port}"


@asynccontextmanager
async def open_services(
    settings: Settings,
    roles: Roles = Roles(),
    *,
    clock: Clock | None = None,
    gateway: PaymentGateway | None = None,
    policy: AdmissionPolicy | None = None,
) -> AsyncIterator[Services]:
    """Connect, migrate, start the parts ``roles`` asks for; stop them all on exit."""
    assert settings.redis_url and settings.database_url, "resolve embedded servers first"
    clock = clock or WallClock()
    policy = policy or AdmissionPolicy(abandon_grace_s=settings.abandon_grace_s)
    async with (
        open_bridge() as bridge,
        open_redis_store(settings.redis_url, bridge, wait_s=settings.startup_wait_s) as redis,
        open_pg_store(settings.database_url, bridge, wait_s=settings.startup_wait_s) as pg,
    ):
        await pg.migrate()
        catalog = EventCatalog(redis, pg)
        signer = TokenSigner(settings.secret.encode())
        checkout = Checkout(
            redis,
            pg,
            catalog,
            gateway or SandboxGateway(),
            clock,
            payment_window_s=settings.payment_window_s,
            gateway_timeout_s=settings.gateway_timeout_s,
        )
        line = WaitingLine(
            redis,
            clock,
            JoinLimits(
                per_client=BucketLimit(settings.join_client_rate_per_s, settings.join_client_burst),
                per_ip=BucketLimit(settings.join_ip_rate_per_s, settings.join_ip_burst),
            ),
        )
        hub = Hub(
            redis,
            catalog,
            signer,
            position_interval_s=settings.position_interval_s,
            position_frames_per_s=settings.position_frames_per_s,
            payment_window_s=settings.payment_window_s,
        )
        services = Services(
            settings, redis, pg, catalog, checkout, line, hub, signer, clock, policy=policy
        )
        async with anyio.create_task_group() as tg:
            batchers = (
                checkout.begin,
                checkout.commit,
                checkout.confirm,
                line.joins,
                line.presence,
            )
            for batcher in batchers:
                await tg.start(batcher.run)
            if roles.worker:
                # Redis agrees with PostgreSQL before admission hands out any seat.
                await tg.start(
                    partial(
                        run_reconciler,
                        redis,
                        pg,
                        clock,
                        interval_s=settings.reconcile_interval_s,
                        window_s=settings.reconcile_window_s,
                    )
                )
                await tg.start(partial(run_worker, redis, clock, policy))
            if roles.worker and not roles.api:
                from api.app import create_ops_app
                from api.http_server import serve_http

                services.http_port = await tg.start(
                    partial(
                        serve_http, create_ops_app(services), settings.host, settings.metrics_port
                    )
                )
            if roles.api:
                from api.app import create_app
                from api.http_server import serve_http

                await tg.start(hub.run)
                heartbeats = Heartbeats(encode(Heartbeat()), settings.heartbeat_interval_s)
                tg.start_soon(heartbeats.run)
                handler = WaitroomHandler(
                    hub,
                    line,
                    catalog,
                    signer,
                    clock,
                    max_pending=settings.max_pending_messages,
                    heartbeats=heartbeats,
                )
                services.ws_port = await tg.start(
                    partial(
                        serve_websockets,
                        handler,
                        settings.host,
                        settings.ws_port,
                        max_message_bytes=settings.max_frame_bytes,
                        reuse_port=settings.reuse_port,
                    )
                )
                services.http_port = await tg.start(
                    partial(
                        serve_http,
                        create_app(services),
                        settings.host,
                        settings.http_port,
                        reuse_port=settings.reuse_port,
                    )
                )
            try:
                yield services
            finally:
                tg.cancel_scope.cancel()
