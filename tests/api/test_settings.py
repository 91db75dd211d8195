"""Settings from the environment: the position frame budget, the start-up wait, the
WebSocket URL told to clients, kept development secrets, the default data directory, logs, tracing,
the edge's limits."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.settings import ConfigurationError, Settings

pytestmark = pytest.mark.once


def test_position_budget_is_read_from_the_environment() -> None:
    """BOOKING_POSITION_FRAMES_PER_S sets the budget, as a number; unset keeps the default."""
    assert Settings.from_env({}).position_frames_per_s == 1_000.0
    settings = Settings.from_env({"BOOKING_POSITION_FRAMES_PER_S": "250"})
    assert settings.position_frames_per_s == 250.0


@pytest.mark.parametrize("budget", ["0", "-5", "nan"])
def test_a_budget_that_sends_nothing_is_refused(budget: str) -> None:
    """A budget of no frames per second would leave clients without positions: refused at start."""
    with pytest.raises(ValueError, match="position_frames_per_s"):
        Settings.from_env({"BOOKING_POSITION_FRAMES_PER_S": budget})


def test_refund_retry_cap_is_read_from_the_environment() -> None:
    """BOOKING_REFUND_RETRY_MAX_S caps the wait between refund attempts; 0 or less is refused."""
    assert Settings.from_env({}).refund_retry_max_s == 60.0
    assert Settings.from_env({"BOOKING_REFUND_RETRY_MAX_S": "5"}).refund_retry_max_s == 5.0
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ValueError, match="refund_retry_max_s"):
            Settings.from_env({"BOOKING_REFUND_RETRY_MAX_S": bad})


def test_startup_wait_is_read_from_the_environment() -> None:
    """BOOKING_STARTUP_WAIT_S sets how long start-up waits for the stores, as a number; 0 is allowed."""
    assert Settings.from_env({}).startup_wait_s == 60.0
    assert Settings.from_env({"BOOKING_STARTUP_WAIT_S": "2.5"}).startup_wait_s == 2.5
    assert Settings.from_env({"BOOKING_STARTUP_WAIT_S": "0"}).startup_wait_s == 0.0


@pytest.mark.parametrize("wait", ["-1", "nan"])
def test_a_negative_startup_wait_is_refused(wait: str) -> None:
    """A start-up wait below zero (or not a number) is refused at start."""
    with pytest.raises(ValueError, match="startup_wait_s"):
        Settings.from_env({"BOOKING_STARTUP_WAIT_S": wait})


@pytest.mark.parametrize(
    ("bound", "host_header", "told"),
    [
        ("0.0.0.0", "shop.example:8000", "ws://shop.example:8001"),
        ("0.0.0.0", "10.1.2.3", "ws://10.1.2.3:8001"),
        ("::", "[2001:db8::1]:8000", "ws://[2001:db8::1]:8001"),
        ("0.0.0.0", None, "ws://0.0.0.0:8001"),
        ("127.0.0.1", "shop.example:8000", "ws://127.0.0.1:8001"),
    ],
)
def test_the_websocket_url_follows_the_host_header_on_every_interface(
    bound: str, host_header: str | None, told: str
) -> None:
    """Bound to 0.0.0.0 or ::, clients are told the host they reached the API by, on the
    WebSocket port; bound to one address, that address."""
    assert Settings(host=bound).ws_url(8001, host_header) == told


def test_a_public_websocket_url_wins_over_the_host_header() -> None:
    """BOOKING_PUBLIC_WS_URL is told as it is."""
    settings = Settings.from_env(
        {"BOOKING_PUBLIC_WS_URL": "wss://ws.example", "BOOKING_HOST": "::"}
    )
    assert settings.ws_url(8001, "shop.example") == "wss://ws.example"


def test_generated_secrets_are_kept_in_the_data_directory(tmp_path: Path) -> None:
    """Without BOOKING_SECRET / BOOKING_ADMIN_KEY, both are made once (mode 0600) and read
    again by the next process; given ones win and are not written."""
    env = {"BOOKING_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env).with_kept_secrets()
    again = Settings.from_env(env).with_kept_secrets()
    assert (first.secret, first.admin_key) == (again.secret, again.admin_key)
    for name in ("secret", "admin-key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    given = Settings.from_env({**env, "BOOKING_SECRET": "s" * 16}).with_kept_secrets()
    assert given.secret == "s" * 16 and given.admin_key == first.admin_key


def test_several_processes_refuse_a_random_secret() -> None:
    """A random secret cannot be shared; a given one can."""
    with pytest.raises(ConfigurationError, match="needs BOOKING_SECRET"):
        Settings.from_env({}).require_shared_secret("serve --processes 2")
    Settings.from_env({"BOOKING_SECRET": "s" * 16}).require_shared_secret("serve --processes 2")


def test_the_default_data_directory_does_not_depend_on_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command run from anywhere in a checkout uses the checkout's .booking."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).data_dir == root / ".booking"


@pytest.mark.parametrize(
    "env",
    [
        {"BOOKING_TRACING": "maybe"},
        {"BOOKING_LOG_LEVEL": "chatty"},
        {"BOOKING_LOG_FORMAT": "xml"},
    ],
)
def test_unknown_logging_and_tracing_values_are_refused(env: dict[str, str]) -> None:
    """A misspelt tracing switch, log level or log format is refused at start, not ignored."""
    with pytest.raises(ValueError):
        Settings.from_env(env)


def test_log_level_is_read_from_the_environment() -> None:
    """BOOKING_LOG_LEVEL sets the level (any case); unset is info."""
    assert Settings.from_env({}).log_level == "info"
    assert Settings.from_env({"BOOKING_LOG_LEVEL": "DEBUG"}).log_level == "DEBUG"


def test_tracing_follows_the_collector_endpoint() -> None:
    """Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (or BOOKING_TRACING=on);
    BOOKING_TRACING=off wins over an endpoint."""
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not Settings.from_env({}).tracing_enabled
    assert Settings.from_env(endpoint).tracing_enabled
    assert Settings.from_env(endpoint).otlp_endpoint == "http://collector:4318"
    assert not Settings.from_env({**endpoint, "BOOKING_TRACING": "off"}).tracing_enabled
    assert Settings.from_env({"BOOKING_TRACING": "on"}).tracing_enabled


def test_edge_limits_are_read_from_the_environment() -> None:
    """Trusted proxies and exempt addresses as CIDR lists ("none": no address), limits as
    RATE/BURST, the WebSocket cap and the timeouts as numbers; unset keeps the defaults."""
    default = Settings.from_env({})
    assert default.trusted_proxies == ()
    assert default.limit_exempt == ("127.0.0.0/8", "::1/128")
    settings = Settings.from_env(
        {
            "BOOKING_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1 2001:db8::/32",
            "BOOKING_LIMIT_EXEMPT": "none",
            "BOOKING_LIMIT_PER_IP": "5/50",
            "BOOKING_LIMIT_PER_HOLD": "0.5/4",
            "BOOKING_LIMIT_PER_ADMIN_KEY": "10/100",
            "BOOKING_WS_CONNECTIONS_PER_IP": "7",
            "BOOKING_WS_JOIN_TIMEOUT_S": "12.5",
            "BOOKING_BODY_TIMEOUT_S": "3",
        }
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.1", "2001:db8::/32")
    assert settings.limit_exempt == ()
    assert (settings.limit_per_ip, settings.limit_per_hold) == ((5.0, 50), (0.5, 4))
    assert settings.limit_per_admin_key == (10.0, 100)
    assert settings.ws_connections_per_ip == 7
    assert (settings.ws_join_timeout_s, settings.body_timeout_s) == (12.5, 3.0)


def test_the_gateway_is_read_from_the_environment() -> None:
    """BOOKING_GATEWAY, BOOKING_STRIPE_API_KEY and BOOKING_STRIPE_API_BASE fill the gateway's
    settings; the sandbox is the default; the key never shows in the settings' repr."""
    assert Settings.from_env({}).gateway == "sandbox"
    env = {
        "BOOKING_GATEWAY": "stripe",
        "BOOKING_STRIPE_API_KEY": "sk_live_0123456789abcdef",
        "BOOKING_STRIPE_API_BASE": "https://api.stripe.com",
    }
    settings = Settings.from_env(env)
    assert (settings.gateway, settings.stripe_api_key, settings.stripe_api_base) == (
        "stripe",
        "sk_live_0123456789abcdef",
        "https://api.stripe.com",
    )
    assert "sk_live" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BOOKING_GATEWAY": "paypal"}, "must be sandbox or stripe"),
        ({"BOOKING_GATEWAY": "stripe"}, "needs BOOKING_STRIPE_API_KEY"),
        ({"BOOKING_STRIPE_API_BASE": "ftp://gateway"}, "BOOKING_STRIPE_API_BASE must start with"),
    ],
)
def test_a_gateway_that_cannot_work_is_refused(env: dict[str, str], message: str) -> None:
    """An unknown gateway, Stripe without a key, or a base URL that is not HTTP: refused with
    one line, before anything starts."""
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_the_ticket_key_is_kept_given_or_derived_from_the_secret(tmp_path: Path) -> None:
    """Embedded: a ticket key is made once in the data directory (0600) and read again;
    given, BOOKING_TICKET_KEY wins; otherwise processes sharing BOOKING_SECRET share one."""
    first = Settings.from_env({}, data_dir=tmp_path).with_kept_secrets()
    again = Settings.from_env({}, data_dir=tmp_path).with_kept_secrets()
    assert first.ticket_key_seed == again.ticket_key_seed and len(first.ticket_key_seed) == 32
    assert stat.S_IMODE((tmp_path / "ticket-key").stat().st_mode) == 0o600
    given = "A" * 43
    assert Settings.from_env({"BOOKING_TICKET_KEY": given}).ticket_key_seed == bytes(32)
    shared = {"BOOKING_SECRET": "s" * 32}
    assert Settings.from_env(shared).ticket_key_seed == Settings.from_env(shared).ticket_key_seed
    other = Settings.from_env({"BOOKING_SECRET": "t" * 32}).ticket_key_seed
    assert other != Settings.from_env(shared).ticket_key_seed


@pytest.mark.parametrize(
    "env",
    [
        {"BOOKING_TRUSTED_PROXIES": "10.0.0.0/33"},
        {"BOOKING_LIMIT_EXEMPT": "localhost"},
        {"BOOKING_LIMIT_PER_IP": "20"},
        {"BOOKING_LIMIT_PER_HOLD": "0/10"},
        {"BOOKING_LIMIT_PER_ADMIN_KEY": "5/0"},
        {"BOOKING_WS_CONNECTIONS_PER_IP": "0"},
        {"BOOKING_WS_JOIN_TIMEOUT_S": "0"},
    ],
)
def test_unusable_edge_limits_are_refused(env: dict[str, str]) -> None:
    """A malformed CIDR, limit or timeout stops the command at start with one line."""
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "env",
    [
        {"BOOKING_TICKET_KEY": "short"},
        {"BOOKING_TICKET_KEY": "!" * 43},
        {"BOOKING_SMTP_URL": "http://mail.example.com"},
        {"BOOKING_SMTP_URL": "mail.example.com:25"},
        {"BOOKING_TOKEN_TTL_S": "0"},
        {"BOOKING_MAIL_FROM": "nobody"},
    ],
)
def test_unusable_ticket_and_mail_settings_are_refused(env: dict[str, str]) -> None:
    """A ticket key that is not 32 bytes of base64url, an SMTP URL of another scheme, a
    booking token that lives no time, a sender that is no address: refused at start."""
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


def test_mail_settings_are_read_from_the_environment() -> None:
    """BOOKING_SMTP_URL, BOOKING_MAIL_FROM, BOOKING_TOKEN_TTL_S and BOOKING_PUBLIC_URL."""
    settings = Settings.from_env(
        {
            "BOOKING_SMTP_URL": "smtps://user:pw@mail.example.com:465",
            "BOOKING_MAIL_FROM": "tickets@example.com",
            "BOOKING_TOKEN_TTL_S": "86400",
            "BOOKING_PUBLIC_URL": "https://tickets.example.com",
        }
    )
    assert settings.smtp_url == "smtps://user:pw@mail.example.com:465"
    assert (settings.mail_from, settings.booking_token_ttl_s) == ("tickets@example.com", 86_400)
    assert settings.public_url == "https://tickets.example.com"
    assert "pw" not in repr(settings)


def test_relay_and_webhook_settings_are_read_from_the_environment() -> None:
    """BOOKING_WORKER_RELAY, the log stream's length, the summaries' cadence, and the
    webhooks' timeout, backoff and attempts, handed to the relay as its policy."""
    settings = Settings.from_env(
        {
            "BOOKING_WORKER_RELAY": "off",
            "BOOKING_WORKER_PROJECTOR": "off",
            "BOOKING_LOG_STREAM_MAXLEN": "5000",
            "BOOKING_ADMISSION_SUMMARY_S": "30",
            "BOOKING_WEBHOOK_TIMEOUT_S": "2.5",
            "BOOKING_WEBHOOK_BACKOFF_S": "0.5",
            "BOOKING_WEBHOOK_BACKOFF_MAX_S": "60",
            "BOOKING_WEBHOOK_MAX_ATTEMPTS": "4",
        }
    )
    assert (settings.worker_relay, settings.admission_summary_s) == ("off", 30.0)
    assert settings.worker_projector == "off"
    policy = settings.relay_policy
    assert (policy.stream_maxlen, policy.webhook_timeout_s) == (5000, 2.5)
    assert (policy.webhook_backoff_s, policy.webhook_backoff_max_s) == (0.5, 60.0)
    assert policy.webhook_max_attempts == 4


@pytest.mark.parametrize(
    "env",
    [
        {"BOOKING_WORKER_RELAY": "sometimes"},
        {"BOOKING_WORKER_PROJECTOR": "yes"},
        {"BOOKING_WEBHOOK_MAX_ATTEMPTS": "0"},
        {"BOOKING_WEBHOOK_BACKOFF_S": "-1"},
        {"BOOKING_LOG_STREAM_MAXLEN": "0"},
    ],
)
def test_unusable_relay_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


def test_the_delivery_backlog_bound_is_read_from_the_environment() -> None:
    """BOOKING_DELIVERY_BACKLOG bounds the prompts not yet delivered (0: no pacing); below 0
    or not a whole number is refused."""
    assert Settings.from_env({}).delivery_backlog == 2_000
    assert Settings.from_env({"BOOKING_DELIVERY_BACKLOG": "500"}).delivery_backlog == 500
    assert Settings.from_env({"BOOKING_DELIVERY_BACKLOG": "0"}).delivery_backlog == 0
    with pytest.raises(ConfigurationError, match="BOOKING_DELIVERY_BACKLOG"):
        Settings.from_env({"BOOKING_DELIVERY_BACKLOG": "-1"})
    with pytest.raises(ValueError):
        Settings.from_env({"BOOKING_DELIVERY_BACKLOG": "many"})
