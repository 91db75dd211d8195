"""The pages in a real headless browser (Debian's chromium), shot and checked with axe-core.

Screenshots of every state land in ``artifacts/pages/`` (git-ignored), at 1280 px and
390 px wide; each state is also checked with axe-core (no serious or critical violation).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from api.wiring import Services
from realtime import protocol as p
from tests.api.helpers import (
    FUTURE,
    create_event,
    expect,
    get_event,
    new_key,
    pay,
    pg_value,
    ws_connect,
)
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
#: Two sections priced in pounds: seated A (8 seats at £25), general admission GA (10 at £10).
POUNDS = {"currency": "GBP"}

if shutil.which(CHROMIUM) is None:  # ./run-tests installs it; a bare pytest may lack it
    pytestmark = [pytestmark, pytest.mark.skip(reason=f"{CHROMIUM} is not installed")]  # type: ignore[assignment]


async def _run_scenario(
    name: str, url: str, api_url: str, event_id: str, env: dict[str, str] | None = None
) -> None:
    """Run a browser scenario of tests/pages/driver.py in its own process.

    The browser runs outside the test's process: playwright's sync API needs a plain
    asyncio loop, and trio-asyncio owns the loop policy here.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    args = [sys.executable, "-m", "tests.pages.driver", name, url, api_url, event_id]
    args.append(str(ARTIFACTS))
    with anyio.fail_after(150):
        done = await anyio.run_process(
            args, check=False, cwd=ROOT, env={**os.environ, **(env or {})}
        )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


async def _sell_everything(http: httpx.AsyncClient, event: dict[str, object]) -> None:
    """Buy every seat of an event of one 2-place section through the real interfaces."""
    async with ws_connect(str(event["waitroom_url"])) as ws:
        await ws.send(p.encode(p.Join(quantity=2, client_id="buys-all")).decode())
        await expect(ws, p.Queued)
        prompt = await expect(ws, p.Prompt)
        resp = await pay(http, prompt.hold_id, prompt.hold_token, new_key())
        assert resp.status_code == 200, resp.text


async def test_the_index_lists_events_and_unknown_pages_are_the_404_page(
    services: Services, http: httpx.AsyncClient
) -> None:
    """The index shows each event's state, prices and seats and links its page; an unknown
    event's page and an unknown path are the 404 page for a browser, JSON for the API."""
    gone = await create_event(
        http, name="Gone already", sections=[{"id": "GA", "price_cents": 900, "capacity": 2}]
    )
    await _sell_everything(http, gone)
    await create_event(http, name="Next season", opens_at=FUTURE)
    event_id = (await create_event(http, name="Aurora live", **POUNDS))["id"]
    await _run_scenario("index", f"{services.http_url}/", services.http_url, event_id)
    browser = {"Accept": "text/html,application/xhtml+xml"}
    for path in ("/events/evnosuchevent", "/events/bad%20id", "/no/such/page"):
        page = await http.get(path, headers=browser)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert 'href="/pages/style.css"' in page.text
        api = await http.get(path)
        assert (api.status_code, api.json()["error"]) == (404, "not_found")


async def test_a_buyer_chooses_a_section_waits_pays_and_is_confirmed(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Sections and prices before joining; join section A for 2; wait behind another buyer's
    hold (one hold at a time), told in words; reconnect without losing the place; get the
    prompt in pounds; pay; see confirmed. Its two seats are in A (and so is the other
    buyer's: A has the best seats)."""
    event = await create_event(http, name="Aurora live", max_active_holds=1, **POUNDS)
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("buyer", url, services.http_url, event["id"])
    sections = {s["id"]: s for s in (await get_event(http, event["id"]))["sections"]}
    assert (sections["A"]["sold"], sections["GA"]["sold"]) == (3, 0)  # the other buyer too
    recipient = await pg_value(
        services,
        "SELECT m.recipient FROM mail_outbox m JOIN bookings b ON b.id = m.booking_id "
        "WHERE b.event_id = $1",
        event["id"],
    )
    assert recipient == "buyer@example.com"  # the address given on the page


async def test_an_expired_hold_offers_to_get_back_in_line(
    services: Services, http: httpx.AsyncClient
) -> None:
    """A hold of 3 s runs out on the page; "Get back in line" joins again and is prompted."""
    event = await create_event(http, name="Quick holds", hold_seconds=3)
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("expired", url, services.http_url, event["id"])
    view = await get_event(http, event["id"])
    assert view["admitted"] == 2


async def test_a_sold_out_event_offers_no_place_in_line(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Every seat sold: the page says sold out and has no "Get in line"."""
    event = await create_event(
        http, name="Gone already", sections=[{"id": "GA", "price_cents": 900, "capacity": 2}]
    )
    await _sell_everything(http, event)
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("sold_out", url, services.http_url, event["id"])


async def test_leaving_the_line_forgets_the_place(
    services: Services, http: httpx.AsyncClient
) -> None:
    """ "Leave the line" disconnects and forgets the token; the page offers to get back in."""
    event = await create_event(http, name="Changed my mind")
    assert (await http.post(f"/v1/events/{event['id']}/pause", headers=admin_headers())).is_success
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("leave", url, services.http_url, event["id"])


async def test_giving_the_seats_back_frees_them_at_once(
    services: Services, http: httpx.AsyncClient
) -> None:
    """ "Give the seats back" on the prompt releases the hold: the seats are free again."""
    event = await create_event(http, name="Second thoughts")
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("release", url, services.http_url, event["id"])
    view = await get_event(http, event["id"])
    assert sum(s["held"] for s in view["sections"]) == 0
    assert sum(s["free"] for s in view["sections"]) == 18


async def test_joining_before_the_sale_opens_shows_the_pre_queue(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Before opens_at the page explains the pre-queue and counts down to the opening."""
    event_id = (await create_event(http, name="Early birds", opens_at=FUTURE))["id"]
    await _run_scenario("pre_queue", f"{services.http_url}/events/{event_id}", "", event_id)
    assert (await get_event(http, event_id))["queue_length"] == 1


async def _buyers(http: httpx.AsyncClient, waitroom_url: str, count: int) -> None:
    """``count`` buyers arriving over ~10 s; most pay, some let their hold run out."""

    async def buyer(n: int) -> None:
        await anyio.sleep(n * 10 / count)
        async with ws_connect(waitroom_url) as ws:
            await ws.send(p.encode(p.Join(quantity=1 + n % 2, client_id=f"sale-{n}")).decode())
            await expect(ws, p.Queued, wait_s=60)
            message = await expect(ws, p.Prompt | p.SoldOut, wait_s=60)  # type: ignore[arg-type]
            if isinstance(message, p.Prompt) and n % 5:
                await anyio.sleep(0.5 + n % 3)
                await pay(http, message.hold_id, message.hold_token, new_key())

    async with anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(buyer, n)


async def test_the_page_solves_the_join_challenge(
    services: Services, http: httpx.AsyncClient
) -> None:
    """With a join challenge asked, the page solves it (Web Worker, WebCrypto) and is
    admitted; its solution was checked and remembered by the server."""
    event = await create_event(http, name="Proof of work", challenge_difficulty=20_000)
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("challenge", url, services.http_url, event["id"])
    view = await get_event(http, event["id"])
    assert view["active_holds"] == 1


async def test_admin_console_mid_sale(services: Services, http: httpx.AsyncClient) -> None:
    """While buyers join and pay, the console draws the sale and shows each section; with the
    admin key typed in it changes the caps, pauses and resumes; a wrong key changes nothing."""
    event = await create_event(
        http,
        name="Admin view",
        hold_seconds=6,
        max_active_holds=5,
        sections=[
            {"id": "Stalls", "price_cents": 4_500, "rows": [{"label": "A", "seats": 20}]},
            {"id": "Standing", "price_cents": 2_500, "capacity": 60},
        ],
    )
    url = f"{services.http_url}/events/{event['id']}/admin"
    async with anyio.create_task_group() as tg:
        tg.start_soon(_buyers, http, event["waitroom_url"], 40)
        await _run_scenario("admin", url, services.http_url, event["id"])
    view = await get_event(http, event["id"])
    assert (view["state"], view["max_active_holds"]) == ("open", 7)


async def test_admin_console_cancels_the_event(services: Services, http: httpx.AsyncClient) -> None:
    """An event whose seats are all sold, cancelled with the console's button: the sale
    closes, the progress shows every booking refunded, and the seats are free again."""
    event = await create_event(
        http, name="Cancelled show", sections=[{"id": "GA", "price_cents": 1_000, "capacity": 2}]
    )
    await _sell_everything(http, event)
    url = f"{services.http_url}/events/{event['id']}/admin"
    await _run_scenario("cancel_event", url, services.http_url, event["id"])
    view = await get_event(http, event["id"])
    assert view["state"] == "closed" and view["sections"][0]["free"] == 2


async def test_the_door_checks_tickets_in_by_typed_code(
    services: Services, http: httpx.AsyncClient
) -> None:
    """The check-in page with a staff key: green with the seat, red when in already (time and
    gate), cancelled or unknown; the counts on the page and the admin page.

    Headless chromium has no BarcodeDetector, so codes are typed. The third ticket is
    cancelled by its buyer before the door opens."""
    event = await create_event(http, name="Door night")
    async with ws_connect(str(event["waitroom_url"])) as ws:
        await ws.send(p.encode(p.Join(quantity=3, client_id="door", section="A")).decode())
        await expect(ws, p.Queued)
        prompt = await expect(ws, p.Prompt)
    paid = await pay(http, prompt.hold_id, prompt.hold_token, new_key())
    assert paid.status_code == 200, paid.text
    codes = [t["code"] for t in paid.json()["tickets"]]
    cancelled = await http.post(
        f"/v1/bookings/{paid.json()['id']}/cancel",
        json={"tickets": [codes[2]]},
        headers={"Authorization": f"Bearer {prompt.hold_token}", "Idempotency-Key": new_key()},
    )
    assert cancelled.status_code == 200, cancelled.text
    made = await http.post(
        f"/v1/events/{event['id']}/staff-keys", json={"label": "North"}, headers=admin_headers()
    )
    assert made.status_code == 201, made.text
    url = f"{services.http_url}/events/{event['id']}/checkin"
    env = {"CHECKIN_CODES": ",".join(codes), "CHECKIN_KEY": made.json()["key"]}
    await _run_scenario("checkin", url, services.http_url, event["id"], env)
    gates = await pg_value(
        services,
        "SELECT string_agg(coalesce(checked_in_gate, '-'), ',' ORDER BY code) FROM tickets "
        "WHERE code = ANY($1)",
        codes,
    )
    assert sorted(gates.split(",")) == ["-", "-", "North"]


async def test_a_buyer_pays_reads_the_tickets_and_cancels_them_on_the_page(
    services: Services, http: httpx.AsyncClient
) -> None:
    """The buyer's whole path in the browser: join, pay, the tickets (QR codes, PDF), one
    ticket cancelled after a confirmation, then the rest: the refunds shown, the tickets
    marked. The gateway refunded what the page said, and the seats are on sale again."""
    event = await create_event(http, name="Changed plans", **POUNDS)
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("buyer_cancels", url, services.http_url, event["id"])
    refunds = await pg_value(
        services,
        "SELECT array_agg(amount_cents ORDER BY created_at) FROM cancellations "
        "WHERE event_id = $1 AND status = 'done' AND NOT by_admin",
        event["id"],
    )
    assert refunds == [2_500, 5_000]
    sections = {s["id"]: s for s in (await get_event(http, event["id"]))["sections"]}
    assert (sections["A"]["free"], sections["A"]["sold"]) == (8, 0)


async def test_tickets_of_an_event_without_refunds_offer_no_cancel(
    services: Services, http: httpx.AsyncClient
) -> None:
    """An event whose buyers may not cancel: the tickets page says so, with no button."""
    event = await create_event(http, name="Final sale", buyer_refunds=False, **POUNDS)
    url = f"{services.http_url}/events/{event['id']}"
    await _run_scenario("no_refunds", url, services.http_url, event["id"])


async def test_page_assets_are_served_by_name_only(http: httpx.AsyncClient) -> None:
    """Scripts and the stylesheet are served by name with their types; anything else is 404."""
    for name, kind in [("common.js", "text/javascript"), ("style.css", "text/css")]:
        resp = await http.get(f"/pages/{name}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind)
    assert (await http.get("/pages/..%2Fapp.py")).status_code == 404
    assert (await http.get("/pages/not_found.html")).status_code == 404
    index = await http.get("/")
    assert index.status_code == 200 and "/pages/index.js" in index.text
