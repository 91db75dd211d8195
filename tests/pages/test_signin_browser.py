"""The waiting-room page's sign-in in a real headless browser (Debian's chromium): the
email code through the real development SMTP server, the operator's token in the
address, and what the page says when a code is wrong, expired or asked for too often."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from api.wiring import Services, open_services
from storage.dev_smtp import DevSmtpServer
from storage.embedded import EmbeddedServers
from tests.api.helpers import create_event, get_event
from tests.conftest import make_settings
from tests.pages.test_pages_browser import _run_scenario, pytestmark  # noqa: F401

SHARED = "operator-shared-secret-0123456789abcdef"
ISSUER, AUDIENCE = "https://shop.example", "booking"


@pytest.fixture
async def services(servers: EmbeddedServers, smtp_server: DevSmtpServer) -> AsyncIterator[Services]:
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        smtp_url=smtp_server.url,
        mail_from="id@example.com",
        identity_secret=SHARED,
        position_interval_s=1.0,
    )
    async with open_services(settings) as running:
        yield running


def _token(sub: str, expires_in_s: int) -> str:
    claims = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + expires_in_s}
    return jwt.encode(claims, SHARED, algorithm="HS256")


async def test_a_buyer_signs_in_by_email_code_and_joins(
    services: Services, http: httpx.AsyncClient, smtp_server: DevSmtpServer
) -> None:
    """Address, mailed code (a wrong one first, then out of tries, then a new one), joined
    with the identity token and the solved challenge, prompted: the line knows the buyer as
    the verified person, whose 2 seats count against max_per_person."""
    event = await create_event(
        http,
        name="Verified fans",
        identity={"kind": "email"},
        max_per_person=2,
        challenge_difficulty=5_000,
    )
    url = f"{services.http_url}/events/{event['id']}"
    env = {"SIGNIN_MAILDIR": str(smtp_server.maildir)}
    await _run_scenario("email_signin", url, services.http_url, event["id"], env)
    view = await get_event(http, event["id"])
    assert (view["active_holds"], view["identity"], view["challenge_difficulty"]) == (
        1,
        "email",
        5_000,
    )


async def test_the_operators_token_in_the_address_joins(
    services: Services, http: httpx.AsyncClient
) -> None:
    """No token: the page sends the buyer to the operator's site. An expired token is
    refused at join and said so; a good one (read from the fragment, then taken out of the
    address bar) joins and is prompted."""
    event = await create_event(
        http,
        name="Members only",
        identity={"kind": "jwt", "issuer": ISSUER, "audience": AUDIENCE},
    )
    url = f"{services.http_url}/events/{event['id']}"
    env = {"SIGNIN_TOKEN": _token("member-7", 600), "SIGNIN_EXPIRED_TOKEN": _token("late", -600)}
    await _run_scenario("token_signin", url, services.http_url, event["id"], env)
    assert (await get_event(http, event["id"]))["active_holds"] == 1


@pytest.fixture
async def limited(servers: EmbeddedServers, smtp_server: DevSmtpServer) -> AsyncIterator[Services]:
    """The system with loopback not exempt from the route limits: 2 requests per route,
    then one every 100 s."""
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        smtp_url=smtp_server.url,
        mail_from="id@example.com",
        limit_exempt=(),
        limit_per_ip=(0.01, 2),
    )
    async with open_services(settings) as running:
        yield running


async def test_asking_for_codes_too_often_shows_the_wait(limited: Services) -> None:
    """The third code asked for within the limit is refused (429): the page shows the wait."""
    async with httpx.AsyncClient(base_url=limited.http_url, trust_env=False) as http:
        event = await create_event(http, name="Hasty", identity={"kind": "email"})
    url = f"{limited.http_url}/events/{event['id']}"
    await _run_scenario("email_rate_limited", url, limited.http_url, event["id"])
