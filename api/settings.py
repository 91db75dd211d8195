"""One frozen settings object, built from flags and the environment (nothing else reads either)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["ENVIRONMENT", "Settings"]

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
    "BOOKING_ABANDON_GRACE_S": "abandon_grace_s",
    "BOOKING_HEARTBEAT_S": "heartbeat_interval_s",
    "BOOKING_POSITION_FRAMES_PER_S": "position_frames_per_s",
}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, in one place."""

    #: Redis URL; None starts the embedded Redis under ``data_dir``.
    redis_url: str | None = None
    #: PostgreSQL URL; None starts the embedded PostgreSQL under ``data_dir``.
    database_url: str | None = None
    #: Where embedded servers keep their data.
    data_dir: Path = Path(".booking")
    #: How long a starting process waits for Redis and PostgreSQL to answer, seconds
    #: (they may be starting alongside it); then it exits.
    startup_wait_s: float = 60.0
    #: HMAC key for tokens; a random one (tokens die with the process) when unset.
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
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
    #: How long a started payment keeps its hold, seconds.
    payment_window_s: float = 30.0
    #: How long the payment gateway may take, seconds.
    gateway_timeout_s: float = 10.0
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
    #: How long a waiting client may be disconnected and keep its place, seconds.
    abandon_grace_s: float = 60.0
    #: Interval of the waiting room's heartbeat message, seconds. Every quiet client gets
    #: one per interval (3,300 frames/s at 100,000 clients and 30 s); keep it under the
    #: idle timeout of any proxy in front (commonly 60 s). The page reconnects after 75 s
    #: of silence.
    heartbeat_interval_s: float = 30.0

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
        for name in ("http_port", "ws_port", "metrics_port"):
            if name in values:
                values[name] = int(values[name])
        for name in (
            "startup_wait_s",
            "abandon_grace_s",
            "heartbeat_interval_s",
            "position_frames_per_s",
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
        if not settings.startup_wait_s >= 0:
            raise ValueError("startup_wait_s must not be negative")
        return settings

    def with_urls(self, redis_url: str | None, database_url: str | None) -> Settings:
        """A copy naming the servers actually in use."""
        return replace(self, redis_url=redis_url, database_url=database_url)

    def ws_url(self, ws_port: int) -> str:
        """Base URL of the WebSocket server as clients should use it."""
        return self.public_ws_url or f"ws://{self.host}:{ws_port}"
