"""Email identity: a code mailed through a real SMTP server, exchanged for a token that
joins; codes are one-use, hashed, limited in tries, and wrong ones refused."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio
import pytest
import redis

from api.client import ApiError, BookingClient, WaitingRoom
from api.wiring import Services, open_services
from engine.email_identity import MAX_ATTEMPTS
from realtime import protocol as p
from storage.dev_smtp import DevSmtpServer
from storage.embedded import EmbeddedServers
from storage.keys import event_keys
from tests.api.helpers import event_body
from tests.conftest import ADMIN_KEY, make_settings

pytestmark = pytest.mark.anyio

MAIL_WAIT_S = 30


@pytest.fixture
async def services(servers: EmbeddedServers, smtp_server: DevSmtpServer) -> AsyncIterator[Services]:
    settings = make_settings(
        servers.redis_url,
        servers.database_url,
        smtp_url=smtp_server.url,
        mail_from="id@example.com",
    )
    async with open_services(settings) as running:
        yield running


@pytest.fixture
async def client(services: Services) -> AsyncIterator[BookingClient]:
    async with BookingClient(services.http_url, admin_key=ADMIN_KEY) as c:
        yield c


async def _code_for(server: DevSmtpServer, address: str, nth: int = 1) -> str:
    """The code of the ``nth`` mail to ``address`` (waited for)."""
    with anyio.fail_after(MAIL_WAIT_S):
        while len(found := [m for m in server.messages() if m["To"] == address]) < nth:  # noqa: ASYNC110 (a maildir)
            await anyio.sleep(0.05)
    mail = found[nth - 1]
    assert mail["From"] == "id@example.com"
    match = re.search(r"\b(\d{6})\b", mail["Subject"])
    assert match is not None, mail["Subject"]
    return match.group(1)


async def test_a_mailed_code_becomes_a_token_that_joins_once_per_person(
    client: BookingClient, servers: EmbeddedServers, smtp_server: DevSmtpServer
) -> None:
    """Send a code, verify it, join with the token from two devices: one place. The code
    is kept only as an HMAC and works once."""
    event = await client.create_event(event_body(identity={"kind": "email"}, max_per_person=2))
    sent = await client.send_email_code(event.id, "Buyer@Example.org")
    assert sent.expires_in_s == 600
    code = await _code_for(smtp_server, "buyer@example.org")
    with redis.Redis.from_url(servers.redis_url) as raw:  # what Redis keeps: an HMAC only
        kept = [raw.get(k) for k in raw.scan_iter(match=f"{event_keys(event.id).email_code('')}*")]
    assert kept and all(v is None or (len(v) == 64 and code.encode() not in v) for v in kept)

    made = await client.verify_email_code(event.id, "buyer@example.org", code)
    with pytest.raises(ApiError) as again:
        await client.verify_email_code(event.id, "buyer@example.org", code)
    assert (again.value.status, again.value.code) == (401, "code_expired")  # used

    async with (
        WaitingRoom.connect(event.waitroom_url) as phone,
        WaitingRoom.connect(event.waitroom_url) as laptop,
    ):
        first = await phone.join("phone", 2, identity=made.token)
        second = await laptop.join("laptop", 1, identity=made.token)
        assert isinstance(first, p.Queued) and isinstance(second, p.Queued)
        assert first.ticket == second.ticket == 1
    other_event = await client.create_event(event_body(identity={"kind": "email"}))
    async with WaitingRoom.connect(other_event.waitroom_url) as room:
        await room.send(p.Join(quantity=1, client_id="x", identity=made.token))
        error = await room.receive()
        assert isinstance(error, p.Error) and error.code == "identity_wrong_audience"


async def test_wrong_codes_are_refused_and_tries_are_limited(
    client: BookingClient, smtp_server: DevSmtpServer
) -> None:
    """A wrong code is 401 code_invalid; after MAX_ATTEMPTS tries even the right one is
    refused until a new code is sent, which works."""
    event = await client.create_event(event_body(identity={"kind": "email"}))
    await client.send_email_code(event.id, "guess@example.org")
    code = await _code_for(smtp_server, "guess@example.org")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(ApiError) as refused:
            await client.verify_email_code(event.id, "guess@example.org", wrong)
        assert (refused.value.status, refused.value.code) == (401, "code_invalid")
    with pytest.raises(ApiError) as spent:
        await client.verify_email_code(event.id, "guess@example.org", code)
    assert spent.value.code == "code_expired"

    await client.send_email_code(event.id, "guess@example.org")
    fresh = await _code_for(smtp_server, "guess@example.org", nth=2)
    assert (await client.verify_email_code(event.id, "guess@example.org", fresh)).token


async def test_email_routes_refuse_events_that_do_not_verify_addresses(
    client: BookingClient,
) -> None:
    """An event without email identity answers 409 to both routes; no mail is sent."""
    event = await client.create_event(event_body())
    with pytest.raises(ApiError) as refused:
        await client.send_email_code(event.id, "a@example.org")
    assert refused.value.status == 409
    with pytest.raises(ApiError) as refused:
        await client.verify_email_code(event.id, "a@example.org", "000000")
    assert refused.value.status == 409
