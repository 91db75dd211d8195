"""The wiring point: every command builds its parts here, and only here.

``open_services`` connects the stores, builds the engine, the waiting line, the
realtime channel and the HTTP app, and starts the parts a process's roles ask for
in one task group; ``open_stores`` and ``open_database`` give the one-shot
commands (migrate, reconcile, event create) the same connected, migrated stores.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio
import anyio.abc

from api.http.app import HttpState, create_app, create_ops_app
from api.http.observe import Observed
from api.http.server import serve_http
from api.settings import SANDBOX_API_KEY, ConfigurationError, Settings
from engine.admission import AdmissionPolicy
from engine.bookings import Booking
from engine.cancellation import run_cancellations
from engine.challenge import JoinChallenges
from engine.email_identity import EmailIdentity
from engine.eventlog import run_admission_summaries, run_relay
from engine.health import run_store_probe
from engine.identity import IdentityVerifier
from engine.interface import Engine, open_engine
from engine.mail import run_mail_sender
from engine.payments import PaymentGateway
from engine.readmodels import run_projector
from engine.reconcile import run_reconciler
from engine.saga import run_payment_recovery
from engine.ticket_codes import TicketCodes
from engine.worker import run_worker
from plumbing.client_ip import AddressPolicy
from plumbing.clock import Clock, WallClock
from realtime.hub import Hub
from realtime.protocol import Heartbeat, encode
from realtime.server import WaitroomHandler
from realtime.session import Heartbeats
from realtime.transport import serve_websockets
from storage.bridge import open_bridge
from storage.jwks import JwksKeys
from storage.pg_store import PgStore, open_pg_store
from storage.redis_store import BucketLimit, RedisStore, open_redis_store
from storage.smtp import SmtpMailer
from storage.stripe_gateway import STRIPE_API_BASE, StripeGateway
from waitroom.limits import RouteLimiter, RouteLimits, retry_after_s
from waitroom.line import JoinLimits, WaitingLine
from waitroom.tokens import TokenSigner

__all__ = [
    "Roles",
    "Services",
    "open_database",
    "open_gateway",
    "open_services",
    "open_stores",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Roles:
    """Which parts this process runs."""

    api: bool = True  # HTTP API + waiting-room WebSocket
    worker: bool = True  # admission, expiry, the projector (and the relay, BOOKING_WORKER_RELAY)


@dataclass
class Services:
    """Every part of a running process, for the routes and the command line."""

    settings: Settings
    redis: RedisStore
    pg: PgStore
    engine: Engine
    line: WaitingLine
    hub: Hub
    clock: Clock
    http_port: int = 0
    ws_port: int = 0
    #: Port of this process's own /metrics when its HTTP port is shared (0: none).
    metrics_port: int = 0
    policy: AdmissionPolicy = field(default_factory=AdmissionPolicy)

    def waitroom_url(self, event_id: str, request_host: str | None = None) -> str:
        """Where clients of ``event_id`` open their WebSocket (``request_host``: the Host
        header of the request asking, for a server bound to every interface)."""
        base = self.settings.ws_url(self.ws_port, request_host)
        return f"{base}/v1/events/{event_id}/waitroom"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.settings.host}:{self.http_port}"


@asynccontextmanager
async def open_database(
    settings: Settings, *, wait_s: float = 0.0, migrate: bool = True
) -> AsyncIterator[PgStore]:
    """PostgreSQL, connected (tried for ``wait_s``) and migrated unless ``migrate`` is False."""
    assert settings.database_url, "resolve embedded servers first"
    async with (
        open_bridge() as bridge,
        open_pg_store(settings.database_url, bridge, wait_s=wait_s) as pg,
    ):
        if migrate:
            await pg.migrate()
        yield pg


@asynccontextmanager
async def open_stores(
    settings: Settings, *, wait_s: float = 0.0
) -> AsyncIterator[tuple[RedisStore, PgStore]]:
    """Redis (scripts loaded) and PostgreSQL (migrated), each tried for ``wait_s``."""
    assert settings.redis_url, "resolve embedded servers first"
    async with (
        open_bridge() as bridge,
        open_redis_store(settings.redis_url, bridge, wait_s=wait_s) as redis,
        open_database(settings, wait_s=wait_s) as pg,
    ):
        yield redis, pg


async def _send_mail(
    services: Services,
    smtp_url: str,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """The confirmation mail loop, sending through ``smtp_url``."""
    settings, engine = services.settings, services.engine

    def page_url(booking: Booking) -> str:
        base = settings.public_url or (services.http_url if services.http_port else "")
        token = engine.holds.booking_token(booking.hold_id, booking.token_expires_s)
        return f"{base.rstrip('/')}/bookings/{booking.id}#token={token}" if base else ""

    async with open_bridge() as bridge:
        mailer = SmtpMailer(smtp_url, bridge)
        logger.info("confirmation mails go through %s", mailer.address)
        await run_mail_sender(
            services.pg,
            engine.bookings,
            engine.tickets,
            mailer,
            sender=settings.mail_from,
            page_url=page_url,
            interval_s=settings.mail_interval_s,
            retry_s=settings.mail_retry_s,
            task_status=task_status,
        )


@asynccontextmanager
async def open_gateway(settings: Settings) -> AsyncIterator[StripeGateway]:
    """The payment gateway the settings name, through the Stripe adapter: Stripe itself, or
    the sandbox gateway process (whose URL the command resolved, see ``api/cli.py``)."""
    if settings.gateway == "stripe":
        assert settings.stripe_api_key, "checked by Settings.from_env"
        gateway = StripeGateway(
            settings.stripe_api_key, api_base=settings.stripe_api_base or STRIPE_API_BASE
        )
    else:
        if not settings.stripe_api_base:
            raise ConfigurationError(
                "no sandbox gateway: run `booking gateway` and set BOOKING_STRIPE_API_BASE "
                "to its URL, or BOOKING_GATEWAY=stripe"
            )
        gateway = StripeGateway(
            settings.stripe_api_key or SANDBOX_API_KEY,
            api_base=settings.stripe_api_base,
            sandbox=True,
        )
    try:
        yield gateway
    finally:
        with anyio.CancelScope(shield=True):
            await gateway.aclose()


@asynccontextmanager
async def _open_code_mailer(smtp_url: str | None) -> AsyncIterator[SmtpMailer | None]:
    """The mailer of identity codes (the API's, over its own bridge); None without SMTP."""
    if smtp_url is None:
        yield None
        return
    async with open_bridge() as bridge:
        yield SmtpMailer(smtp_url, bridge)


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
    clock = clock or WallClock()
    policy = policy or AdmissionPolicy(
        abandon_grace_s=settings.abandon_grace_s,
        delivery_backlog=settings.delivery_backlog or None,
    )
    signer = TokenSigner(settings.secret.encode())
    if settings.payment_stale_s <= settings.payment_window_s + 2 * settings.gateway_timeout_s:
        raise ConfigurationError(
            "payment_stale_s must exceed a payment's life: its window and two gateway timeouts"
        )
    async with AsyncExitStack() as stack:
        if gateway is None:
            gateway = await stack.enter_async_context(open_gateway(settings))
        async with _open_services(settings, roles, clock, gateway, policy, signer) as services:
            yield services


@asynccontextmanager
async def _open_services(
    settings: Settings,
    roles: Roles,
    clock: Clock,
    gateway: PaymentGateway,
    policy: AdmissionPolicy,
    signer: TokenSigner,
) -> AsyncIterator[Services]:
    async with (
        open_stores(settings, wait_s=settings.startup_wait_s) as (redis, pg),
        open_engine(
            redis,
            pg,
            signer,
            clock,
            gateway,
            TicketCodes(settings.ticket_key_seed),
            payment_window_s=settings.payment_window_s,
            gateway_timeout_s=settings.gateway_timeout_s,
            refund_retry_max_s=settings.refund_retry_max_s,
            booking_token_ttl_s=settings.booking_token_ttl_s,
        ) as engine,
        _open_code_mailer(settings.smtp_url if roles.api else None) as code_mailer,
        anyio.create_task_group() as tg,
    ):
        addresses = AddressPolicy(settings.trusted_proxies, settings.limit_exempt)
        join_limits = JoinLimits(
            per_client=BucketLimit(settings.join_client_rate_per_s, settings.join_client_burst),
            per_ip=BucketLimit(settings.join_ip_rate_per_s, settings.join_ip_burst),
        )
        line = WaitingLine(redis, clock, join_limits)
        own_key = hashlib.sha256(b"identity\0" + settings.secret.encode()).digest()
        identity = IdentityVerifier(
            JwksKeys(), shared_secret=settings.identity_secret, own_key=own_key
        )
        challenges = JoinChallenges(
            engine.catalog,
            redis,
            clock,
            key=hashlib.sha256(b"challenge\0" + settings.secret.encode()).digest(),
        )
        email_identity = EmailIdentity(
            engine.catalog,
            redis,
            identity,
            code_mailer,
            clock,
            key=own_key,
            sender=settings.mail_from,
        )
        hub = Hub(
            line,
            engine.holds,
            position_interval_s=settings.position_interval_s,
            position_frames_per_s=settings.position_frames_per_s,
        )
        services = Services(settings, redis, pg, engine, line, hub, clock, policy=policy)
        for batcher in (line.joins, line.presence, challenges.used):
            await tg.start(batcher.run)
        await tg.start(partial(run_store_probe, redis, pg))
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
                    refunds=engine.cancellations,
                )
            )
            await tg.start(partial(run_worker, redis, clock, policy))
            await tg.start(
                partial(
                    run_cancellations,
                    engine.cancellations,
                    pg,
                    interval_s=settings.cancellation_interval_s,
                )
            )
            await tg.start(
                partial(
                    run_payment_recovery,
                    pg,
                    gateway,
                    clock,
                    interval_s=settings.payment_recovery_interval_s,
                    stale_s=settings.payment_stale_s,
                )
            )
            if settings.smtp_url:
                await tg.start(partial(_send_mail, services, settings.smtp_url))
            await tg.start(
                partial(
                    run_admission_summaries,
                    pg,
                    redis,
                    clock,
                    interval_s=settings.admission_summary_s,
                )
            )
            if settings.worker_relay == "on":
                await tg.start(partial(run_relay, pg, redis, settings.relay_policy))
            if settings.worker_projector == "on":
                await tg.start(partial(run_projector, pg))
        http_state = HttpState(
            engine=engine,
            admin_key=settings.admin_key,
            max_body_bytes=settings.max_body_bytes,
            waitroom_url=services.waitroom_url,
            limiter=RouteLimiter(
                redis,
                clock,
                RouteLimits(
                    per_ip=BucketLimit(*settings.limit_per_ip),
                    per_hold=BucketLimit(*settings.limit_per_hold),
                    per_admin=BucketLimit(*settings.limit_per_admin_key),
                ),
            ),
            addresses=addresses,
            body_timeout_s=settings.body_timeout_s,
            email_identity=email_identity,
            challenges=challenges,
        )
        if roles.worker and not roles.api:
            services.http_port = await tg.start(
                partial(
                    serve_http,
                    Observed(create_ops_app(http_state)),
                    settings.host,
                    settings.metrics_port,
                )
            )
        if roles.api:
            await tg.start(hub.run)
            heartbeats = Heartbeats(encode(Heartbeat()), settings.heartbeat_interval_s)
            tg.start_soon(heartbeats.run)
            handler = WaitroomHandler(
                hub,
                line,
                engine.catalog,
                signer,
                clock,
                max_pending=settings.max_pending_messages,
                heartbeats=heartbeats,
                addresses=addresses,
                connections_per_ip=settings.ws_connections_per_ip,
                join_timeout_s=settings.ws_join_timeout_s,
                join_wait_s=retry_after_s(join_limits.per_client, join_limits.per_ip),
                identity=identity,
                challenges=challenges,
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
                    Observed(create_app(http_state)),
                    settings.host,
                    settings.http_port,
                    reuse_port=settings.reuse_port,
                    # Later than the body timeout, so a stalled body is answered 408 first.
                    read_timeout_s=settings.body_timeout_s + 5,
                )
            )
            if settings.reuse_port:
                # The shared HTTP port reaches any one of the processes: each also serves
                # its own /metrics on a port of its own, so that every one is scraped.
                services.metrics_port = await tg.start(
                    partial(
                        serve_http,
                        Observed(create_ops_app(http_state)),
                        settings.host,
                        settings.metrics_port,
                    )
                )
        try:
            yield services
        finally:
            tg.cancel_scope.cancel()
