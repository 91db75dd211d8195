"""One frozen settings object, built from flags and the environment (nothing else reads either)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from plumbing.client_ip import LOOPBACK, parse_networks

if TYPE_CHECKING:
    from engine.eventlog import RelayPolicy

__all__ = [
    "ENVIRONMENT",
    "GATEWAYS",
    "SANDBOX_API_KEY",
    "ConfigurationError",
    "Settings",
    "default_data_dir",
]


class ConfigurationError(ValueError):
    """Settings that cannot work: the command stops with one line and exit status 2."""


#: Shortest accepted BOOKING_SECRET, bytes (the HMAC key of tokens).
MIN_SECRET_BYTES = 16
_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")
_POSTGRES_SCHEMES = ("postgresql", "postgres")
#: Files under the data directory holding the development secrets (mode 0600).
SECRET_FILE = "secret"
ADMIN_KEY_FILE = "admin-key"
TICKET_KEY_FILE = "ticket-key"
#: Schemes of BOOKING_SMTP_URL: plain SMTP (STARTTLS when the server offers it) or TLS.
_SMTP_SCHEMES = ("smtp", "smtps")


def default_data_dir() -> Path:
    """Where embedded servers keep their data unless told: the same for every command,
    whatever the current directory.

    From a source checkout, ``.booking`` at its root (next to ``pyproject.toml``); from an
    installed package, ``booking`` in the user's data directory (~/.local/share/booking).
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".booking"
    return Path.home() / ".local" / "share" / "booking"


def _kept_secret(path: Path, make: int) -> str:
    """The secret in ``path``, made once (``make`` random bytes, mode 0600) when missing.

    Written to a private temporary file, then linked into place: of processes starting
    together, one link succeeds and every one reads the same complete secret.
    """
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as out:  # mkstemp makes it 0600
                out.write(secrets.token_urlsafe(make) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    value = path.read_text().strip()
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{path} holds fewer than {MIN_SECRET_BYTES} bytes; delete it to make a new one"
        )
    return value


#: Environment variables read, and the setting each fills.
ENVIRONMENT = {
    "REDIS_URL": "redis_url",
    "DATABASE_URL": "database_url",
    "BOOKING_SECRET": "secret",
    "BOOKING_ADMIN_KEY": "admin_key",
    "BOOKING_DATA_DIR": "data_dir",
    "BOOKING_STARTUP_WAIT_S": "startup_wait_s",
    "BOOKING_HOST": "host",
    "BOOKING_HTTP_PORT": "http_port",
    "BOOKING_WS_PORT": "ws_port",
    "BOOKING_METRICS_PORT": "metrics_port",
    "BOOKING_PUBLIC_WS_URL": "public_ws_url",
    "BOOKING_RUNTIME": "runtime",
    "BOOKING_LOG_FORMAT": "log_format",
    "BOOKING_LOG_LEVEL": "log_level",
    "BOOKING_TRACING": "tracing",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "otlp_endpoint",
    "BOOKING_ABANDON_GRACE_S": "abandon_grace_s",
    "BOOKING_DELIVERY_BACKLOG": "delivery_backlog",
    "BOOKING_HEARTBEAT_S": "heartbeat_interval_s",
    "BOOKING_POSITION_FRAMES_PER_S": "position_frames_per_s",
    "BOOKING_TRUSTED_PROXIES": "trusted_proxies",
    "BOOKING_LIMIT_EXEMPT": "limit_exempt",
    "BOOKING_LIMIT_PER_IP": "limit_per_ip",
    "BOOKING_LIMIT_PER_HOLD": "limit_per_hold",
    "BOOKING_LIMIT_PER_ADMIN_KEY": "limit_per_admin_key",
    "BOOKING_WS_CONNECTIONS_PER_IP": "ws_connections_per_ip",
    "BOOKING_WS_JOIN_TIMEOUT_S": "ws_join_timeout_s",
    "BOOKING_BODY_TIMEOUT_S": "body_timeout_s",
    "BOOKING_GATEWAY": "gateway",
    "BOOKING_STRIPE_API_KEY": "stripe_api_key",
    "BOOKING_STRIPE_API_BASE": "stripe_api_base",
    "BOOKING_TICKET_KEY": "ticket_key",
    "BOOKING_TOKEN_TTL_S": "booking_token_ttl_s",
    "BOOKING_SMTP_URL": "smtp_url",
    "BOOKING_IDENTITY_SECRET": "identity_secret",
    "BOOKING_MAIL_FROM": "mail_from",
    "BOOKING_PUBLIC_URL": "public_url",
    "BOOKING_WORKER_RELAY": "worker_relay",
    "BOOKING_WORKER_PROJECTOR": "worker_projector",
    "BOOKING_LOG_STREAM_MAXLEN": "log_stream_maxlen",
    "BOOKING_ADMISSION_SUMMARY_S": "admission_summary_s",
    "BOOKING_WEBHOOK_TIMEOUT_S": "webhook_timeout_s",
    "BOOKING_WEBHOOK_BACKOFF_S": "webhook_backoff_s",
    "BOOKING_WEBHOOK_BACKOFF_MAX_S": "webhook_backoff_max_s",
    "BOOKING_WEBHOOK_MAX_ATTEMPTS": "webhook_max_attempts",
    "BOOKING_REFUND_RETRY_MAX_S": "refund_retry_max_s",
}

#: The payment gateways a deployment may pay through.
GATEWAYS = ("sandbox", "stripe")
#: The API key sent to the sandbox gateway when none is given (it takes any sk_test_ key).
SANDBOX_API_KEY = "sk_test_sandbox"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, in one place."""

    #: Redis URL; None starts the embedded Redis under ``data_dir``.
    redis_url: str | None = None
    #: PostgreSQL URL; None starts the embedded PostgreSQL under ``data_dir``.
    database_url: str | None = None
    #: Where embedded servers keep their data (see default_data_dir).
    data_dir: Path = field(default_factory=default_data_dir)
    #: How long a starting process waits for Redis and PostgreSQL to answer, seconds
    #: (they may be starting alongside it); then it exits.
    startup_wait_s: float = 60.0
    #: HMAC key for tokens; when unset, kept in the data directory while embedded servers
    #: are in use (with_kept_secrets), else a random one (tokens die with the process).
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    #: True when secret was generated here rather than given.
    secret_generated: bool = True
    #: Bearer key of admin routes; a random one (printed at start) when unset.
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    #: True when admin_key was generated here (so it may be shown; a given key never is).
    admin_key_generated: bool = True
    #: Interface the HTTP and WebSocket servers bind.
    host: str = "127.0.0.1"
    #: HTTP API port (0 picks a free one).
    http_port: int = 8000
    #: Waiting-room WebSocket port (0 picks a free one).
    ws_port: int = 8001
    #: Let other processes serve the same HTTP and WebSocket ports (SO_REUSEPORT):
    #: ``booking serve --processes N`` sets it in each of its N processes.
    reuse_port: bool = False
    #: Port of /metrics, /healthz and /readyz on a worker (a single serve process has them
    #: on http_port; the N processes of ``serve --processes N``, whose HTTP port is shared,
    #: each on one of the N ports after this one). 0 picks free ones.
    metrics_port: int = 9100
    #: WebSocket base URL told to clients (default: ws://host:ws_port).
    public_ws_url: str | None = None
    #: "trio" (default) or "asyncio".
    runtime: str = "trio"
    #: "text" or "json" (JSON lines for production).
    log_format: str = "text"
    #: Lowest level logged: "debug" adds a line per admission with its trace id.
    log_level: str = "info"
    #: "auto": spans exported when otlp_endpoint is set; "on": always (to
    #: http://localhost:4318 when no endpoint is set); "off": never.
    tracing: str = "auto"
    #: Base URL of an OTLP/HTTP collector (``/v1/traces`` is added).
    otlp_endpoint: str | None = None
    #: How long a started payment keeps its hold, seconds.
    payment_window_s: float = 30.0
    #: How long the payment gateway may take, seconds.
    gateway_timeout_s: float = 10.0
    #: Pause between a worker's passes over payments stopped halfway, seconds.
    payment_recovery_interval_s: float = 5.0
    #: Age at which a payment still only claimed is stopped for good (its request cannot be
    #: running any more: past its payment window and its gateway calls), seconds.
    payment_stale_s: float = 60.0
    #: Cadence of position updates, seconds: the clients nearest the head get every change
    #: this often; those further back less often (see position_frames_per_s).
    position_interval_s: float = 1.0
    #: Position frames one WebSocket server sends per second at most, over all its events
    #: and clients; spent nearest the head first.
    position_frames_per_s: float = 1_000.0
    #: Largest accepted request body / WebSocket frame, bytes.
    max_body_bytes: int = 16_384
    max_frame_bytes: int = 4_096
    #: Messages queued for one client before it is disconnected.
    max_pending_messages: int = 32
    #: Joins of one event allowed per client id: refill rate (per second) and burst.
    join_client_rate_per_s: float = 1.0
    join_client_burst: int = 10
    #: Joins of one event allowed per IP address: refill rate (per second) and burst.
    join_ip_rate_per_s: float = 1_000.0
    join_ip_burst: int = 5_000
    #: Pause between a worker's reconciliation passes (one runs at its start), seconds.
    reconcile_interval_s: float = 5.0
    #: How far back the periodic passes look, seconds (the pass at start reads every
    #: booking). A booking reaches Redis seconds after PostgreSQL, so minutes are ample.
    reconcile_window_s: float = 600.0
    #: Longest wait between a worker's attempts at a refund the gateway could not make
    #: (attempts back off from 0.5 s, doubling), seconds.
    refund_retry_max_s: float = 60.0
    #: How often a worker looks for pending cancellations whose next attempt is due, seconds.
    cancellation_interval_s: float = 1.0
    #: How long a waiting client may be disconnected and keep its place, seconds.
    abandon_grace_s: float = 60.0
    #: Most prompts the realtime servers may have left to deliver before admission waits
    #: for them (0: admission is not paced by delivery); see engine/admission.py.
    delivery_backlog: int = 2000
    #: Interval of the waiting room's heartbeat message, seconds. Every quiet client gets
    #: one per interval (3,300 frames/s at 100,000 clients and 30 s); keep it under the
    #: idle timeout of any proxy in front (commonly 60 s). The page reconnects after 75 s
    #: of silence.
    heartbeat_interval_s: float = 30.0
    #: Proxies whose X-Forwarded-For is believed (CIDRs): behind them the client is the
    #: rightmost address not in this list. Empty: the peer address is the client.
    trusted_proxies: tuple[str, ...] = ()
    #: Client addresses the edge's limits spare (the route buckets, per IP and per
    #: identity, and the WebSocket connection cap): loopback by default, so a bench's
    #: thousands of clients on 127.0.0.1 are not one client. Joins keep their own buckets.
    limit_exempt: tuple[str, ...] = LOOPBACK
    #: Requests per client address, per route (payment, release, booking reads, admin):
    #: (refill per second, burst). A buyer makes a handful; an office behind one NAT many.
    limit_per_ip: tuple[float, int] = (20.0, 200)
    #: Requests per hold, per route (payment, release, booking reads of its holder).
    limit_per_hold: tuple[float, int] = (2.0, 20)
    #: Requests per admin key, per route kind (the admin routes).
    limit_per_admin_key: tuple[float, int] = (50.0, 500)
    #: Open waiting-room WebSockets per client address (in each process).
    ws_connections_per_ip: int = 200
    #: A WebSocket that has neither joined nor resumed after this long is closed, seconds.
    ws_join_timeout_s: float = 30.0
    #: Longest a request body may take to arrive, seconds (then 408 and the connection
    #: closed); 5 s more is hypercorn's read timeout, so any stalled connection ends.
    body_timeout_s: float = 10.0
    #: The payment gateway: "sandbox" (the sandbox gateway process, ``booking gateway``:
    #: test cards, no money) or "stripe" (Stripe, with stripe_api_key). Both are paid
    #: through the same Stripe adapter; only the sandbox takes the test card tokens.
    gateway: str = "sandbox"
    #: Stripe's secret key (sk_live_... or sk_test_...); required for "stripe".
    stripe_api_key: str | None = field(default=None, repr=False)
    #: Base URL of the gateway's API: Stripe's unless given; for "sandbox", the sandbox
    #: gateway's (commands start the data directory's own when unset).
    stripe_api_base: str | None = None
    #: Ed25519 private key signing ticket codes: 32 bytes, base64url. When unset, kept in
    #: the data directory while embedded servers are in use, else derived from the secret
    #: (so every process given one BOOKING_SECRET signs with one ticket key).
    ticket_key: str | None = field(default=None, repr=False)
    #: How long a booking token reads its booking, seconds from the confirmation.
    booking_token_ttl_s: int = 366 * 24 * 3600
    #: SMTP server of confirmation mails (smtp://[user:password@]host:port or smtps://);
    #: None: no mail is sent (buyers' addresses wait in the outbox until one is set).
    smtp_url: str | None = field(default=None, repr=False)
    #: HS256 secret shared with the operator's site that signs identity tokens (events
    #: whose ``identity`` is ``jwt`` with neither ``jwks_url`` nor ``public_key``).
    identity_secret: str | None = field(default=None, repr=False)
    #: The From address of confirmation mails.
    mail_from: str = "tickets@booking.invalid"
    #: Base URL of the pages as buyers reach them (a mail links the tickets page under
    #: it); default: this process's own HTTP address when it serves the API, else none.
    public_url: str | None = None
    #: Pause of the mail loop when nothing is due, seconds; a failed send is tried again
    #: after mail_retry_s, doubling per attempt up to an hour.
    mail_interval_s: float = 1.0
    mail_retry_s: float = 5.0
    #: "on": every worker also relays the event log (``booking relay`` runs it alone).
    worker_relay: str = "on"
    #: "on": every worker also projects the event log into the read models (the reports).
    worker_projector: str = "on"
    #: Each event's log stream (``ev:{E}:log``) is trimmed to about this many entries.
    log_stream_maxlen: int = 100_000
    #: How often a worker summarises the waiting room (joins, holds, expiries) into the
    #: log, seconds.
    admission_summary_s: float = 60.0
    #: A webhook POST not answered in full in this long (connecting included) failed, s.
    webhook_timeout_s: float = 10.0
    #: The wait before a failed delivery's retry, doubling per attempt up to the max, s.
    webhook_backoff_s: float = 1.0
    webhook_backoff_max_s: float = 300.0
    #: Attempts before a delivery is dead (its webhook waits for the admin's redeliver).
    webhook_max_attempts: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``env`` (default: the process environment), then ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var, name in ENVIRONMENT.items():
            if env.get(var):
                values[name] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("admin_key_generated", "admin_key" not in values)
        values.setdefault("secret_generated", "secret" not in values)
        for name in ("trusted_proxies", "limit_exempt"):
            if isinstance(values.get(name), str):
                text = values[name].strip()
                values[name] = () if text == "none" else tuple(text.replace(",", " ").split())
        for name in ("limit_per_ip", "limit_per_hold", "limit_per_admin_key"):
            if isinstance(values.get(name), str):
                values[name] = _rate_burst(name, values[name])
        for name in (
            "http_port",
            "ws_port",
            "metrics_port",
            "ws_connections_per_ip",
            "booking_token_ttl_s",
            "log_stream_maxlen",
            "webhook_max_attempts",
            "delivery_backlog",
        ):
            if name in values:
                values[name] = int(values[name])
        for name in (
            "startup_wait_s",
            "abandon_grace_s",
            "heartbeat_interval_s",
            "position_frames_per_s",
            "ws_join_timeout_s",
            "body_timeout_s",
            "refund_retry_max_s",
            "admission_summary_s",
            "webhook_timeout_s",
            "webhook_backoff_s",
            "webhook_backoff_max_s",
        ):
            if name in values:
                values[name] = float(values[name])
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        settings = cls(**values)
        if settings.runtime not in ("trio", "asyncio"):
            raise ValueError(f"runtime must be trio or asyncio, not {settings.runtime!r}")
        if not settings.position_frames_per_s > 0:
            raise ValueError("position_frames_per_s must be positive")
        if settings.log_format not in ("text", "json"):
            raise ValueError(f"log format must be text or json, not {settings.log_format!r}")
        if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {settings.log_level!r}")
        if settings.tracing not in ("auto", "on", "off"):
            raise ValueError(f"tracing must be auto, on or off, not {settings.tracing!r}")
        if not settings.startup_wait_s >= 0:
            raise ValueError("startup_wait_s must not be negative")
        if not settings.refund_retry_max_s > 0:
            raise ValueError("refund_retry_max_s must be positive")
        if len(settings.secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"BOOKING_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                f"(it has {len(settings.secret.encode())})"
            )
        for name in ("trusted_proxies", "limit_exempt"):
            try:
                parse_networks(getattr(settings, name))
            except ValueError as exc:
                raise ConfigurationError(f"{name}: {exc}") from None
        for name in ("limit_per_ip", "limit_per_hold", "limit_per_admin_key"):
            rate, burst = getattr(settings, name)
            if not (rate > 0 and burst >= 1):
                raise ConfigurationError(f"{name} needs a positive rate and a burst of 1 or more")
        if settings.delivery_backlog < 0:
            raise ConfigurationError("BOOKING_DELIVERY_BACKLOG must be 0 (off) or more")
        if settings.ws_connections_per_ip < 1:
            raise ConfigurationError("ws_connections_per_ip must be 1 or more")
        if not (settings.ws_join_timeout_s > 0 and settings.body_timeout_s > 0):
            raise ConfigurationError("ws_join_timeout_s and body_timeout_s must be positive")
        if settings.gateway not in GATEWAYS:
            raise ConfigurationError(
                f"BOOKING_GATEWAY must be sandbox or stripe, not {settings.gateway!r}"
            )
        if settings.gateway == "stripe" and not settings.stripe_api_key:
            raise ConfigurationError("BOOKING_GATEWAY=stripe needs BOOKING_STRIPE_API_KEY")
        _check_url("BOOKING_STRIPE_API_BASE", settings.stripe_api_base, ("http", "https"))
        _check_url("REDIS_URL", settings.redis_url, _REDIS_SCHEMES)
        _check_url("DATABASE_URL", settings.database_url, _POSTGRES_SCHEMES)
        _check_url("BOOKING_SMTP_URL", settings.smtp_url, _SMTP_SCHEMES)
        if settings.ticket_key is not None:
            _ticket_seed(settings.ticket_key)
        if not settings.booking_token_ttl_s > 0:
            raise ConfigurationError("BOOKING_TOKEN_TTL_S must be a positive number of seconds")
        if "@" not in settings.mail_from:
            raise ConfigurationError("BOOKING_MAIL_FROM must be a mail address")
        if settings.worker_relay not in ("on", "off"):
            raise ConfigurationError("BOOKING_WORKER_RELAY must be on or off")
        if settings.worker_projector not in ("on", "off"):
            raise ConfigurationError("BOOKING_WORKER_PROJECTOR must be on or off")
        for name, var in (
            ("admission_summary_s", "BOOKING_ADMISSION_SUMMARY_S"),
            ("webhook_timeout_s", "BOOKING_WEBHOOK_TIMEOUT_S"),
            ("webhook_backoff_s", "BOOKING_WEBHOOK_BACKOFF_S"),
            ("webhook_backoff_max_s", "BOOKING_WEBHOOK_BACKOFF_MAX_S"),
            ("log_stream_maxlen", "BOOKING_LOG_STREAM_MAXLEN"),
            ("webhook_max_attempts", "BOOKING_WEBHOOK_MAX_ATTEMPTS"),
        ):
            if not getattr(settings, name) > 0:
                raise ConfigurationError(f"{var} must be positive")
        return settings

    @property
    def relay_policy(self) -> RelayPolicy:
        """How this deployment's relays publish the log and send webhooks."""
        from engine.eventlog import RelayPolicy

        return RelayPolicy(
            stream_maxlen=self.log_stream_maxlen,
            webhook_timeout_s=self.webhook_timeout_s,
            webhook_backoff_s=self.webhook_backoff_s,
            webhook_backoff_max_s=self.webhook_backoff_max_s,
            webhook_max_attempts=self.webhook_max_attempts,
        )

    @property
    def embedded(self) -> bool:
        """True when a server is embedded (Redis or PostgreSQL has no URL)."""
        return self.redis_url is None or self.database_url is None

    def with_kept_secrets(self) -> Settings:
        """A copy whose generated secret and admin key are kept in the data directory.

        For development on embedded servers: made once (mode 0600) and read again by
        every later process, so a restarted ``serve`` still accepts the tokens buyers hold
        and the admin key stays the same. A given BOOKING_SECRET or BOOKING_ADMIN_KEY wins.
        """
        kept = self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.secret_generated:
            kept = replace(kept, secret=_kept_secret(self.data_dir / SECRET_FILE, 32))
        if self.admin_key_generated:
            kept = replace(kept, admin_key=_kept_secret(self.data_dir / ADMIN_KEY_FILE, 16))
        if self.ticket_key is None:
            kept = replace(kept, ticket_key=_kept_secret(self.data_dir / TICKET_KEY_FILE, 32))
        return kept

    @property
    def ticket_key_seed(self) -> bytes:
        """The 32-byte Ed25519 seed of the ticket key (given, kept, or derived from the secret)."""
        if self.ticket_key is not None:
            return _ticket_seed(self.ticket_key)
        return hashlib.sha256(b"booking ticket key\0" + self.secret.encode()).digest()

    def require_shared_secret(self, why: str) -> None:
        """Refuse a random secret where several processes must check each other's tokens.

        With a random secret each process signs with its own key: a buyer's token is
        refused by every other process, and by this one after a restart.
        """
        if self.secret_generated:
            raise ConfigurationError(
                f"{why} needs BOOKING_SECRET (the same in every process): with a random "
                "one, tokens signed by one process are refused by the others"
            )

    @property
    def tracing_enabled(self) -> bool:
        """Whether this process makes and exports spans."""
        return self.tracing == "on" or (self.tracing == "auto" and bool(self.otlp_endpoint))

    def with_urls(self, redis_url: str | None, database_url: str | None) -> Settings:
        """A copy naming the servers actually in use."""
        return replace(self, redis_url=redis_url, database_url=database_url)

    def ws_url(self, ws_port: int, request_host: str | None = None) -> str:
        """Base URL of the WebSocket server as clients should use it.

        BOOKING_PUBLIC_WS_URL when set. Bound to every interface (0.0.0.0, ::), the host
        a client reached the HTTP API by (``request_host``, its Host header) on the
        WebSocket port, since 0.0.0.0 is nowhere a browser can connect to; else the
        bound host.
        """
        if self.public_ws_url:
            return self.public_ws_url
        host = self.host
        if host in _EVERY_INTERFACE and request_host:
            host = urlsplit(f"//{request_host}").hostname or host
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"ws://{host}:{ws_port}"


#: Addresses that bind every interface, and that no client can connect to.
_EVERY_INTERFACE = ("0.0.0.0", "::", "")


def _rate_burst(name: str, text: str) -> tuple[float, int]:
    """``RATE/BURST`` (e.g. ``20/200``: 20 a second, 200 at once) as a pair."""
    rate, _, burst = text.partition("/")
    try:
        return float(rate), int(burst)
    except ValueError:
        raise ConfigurationError(f"{name} must be RATE/BURST, e.g. 20/200 (not {text!r})") from None


def _ticket_seed(text: str) -> bytes:
    try:
        seed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        seed = b""
    if len(seed) != 32:
        raise ConfigurationError("BOOKING_TICKET_KEY must be 32 bytes in base64url (43 characters)")
    return seed


def _check_url(name: str, url: str | None, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a URL: {exc}") from None
    if parts.scheme not in schemes:
        raise ConfigurationError(
            f"{name} must start with {' or '.join(s + '://' for s in schemes)}"
            f" (it starts with {parts.scheme + '://' if parts.scheme else 'no scheme'})"
        )
