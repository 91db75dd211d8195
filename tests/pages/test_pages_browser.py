"""The waiting-room and admin pages in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from api.wiring import Services
from tests.api.helpers import FUTURE, create_event, get_event
from tests.conftest import admin_headers

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"

if shutil.which(CHROMIUM) is None:  # ./run-tests installs it; a bare pytest may lack it
    pytestmark = [pytestmark, pytest.mark.skip(reason=f"{CHROMIUM} is not installed")]  # type: ignore[assignment]


async def _run_scenario(name: str, url: str, api_url: str, event_id: str) -> None:
    """Run a browser scenario of tests/pages/driver.py in its own process.

    The browser runs outside the test's process: playwright's sync API needs a plain
    asyncio loop, and trio-asyncio owns the loop policy here.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    args = [sys.executable, "-m", "tests.pages.driver", name, url, api_url, event_id]
    args.append(str(ARTIFACTS))
    with anyio.fail_after(90):
        done = await anyio.run_process(args, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


async def test_a_buyer_joins_waits_pays_and_is_confirmed(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Join on the page, see the live position, reconnect after a dropped connection without
    losing the place, get the prompt with its countdown, pay with tok_visa, see confirmed;
    the booking exists."""
    event = await create_event(http, name="Aurora live", hold_seconds=120)
    event_id = event["id"]
    assert (await http.post(f"/v1/events/{event_id}/pause", headers=admin_headers())).is_success
    url = f"{services.http_url}/events/{event_id}"
    await _run_scenario("buyer", url, services.http_url, event_id)
    view = await get_event(http, event_id)
    assert sum(s["sold"] for s in view["sections"]) == 2


async def test_joining_before_the_sale_opens_shows_the_pre_queue(
    services: Services, http: httpx.AsyncClient
) -> None:
    """Before opens_at the page explains the pre-queue and counts down to the opening."""
    event_id = (await create_event(http, name="Early birds", opens_at=FUTURE))["id"]
    await _run_scenario("pre_queue", f"{services.http_url}/events/{event_id}", "", event_id)
    assert (await get_event(http, event_id))["queue_length"] == 1


async def test_admin_page_pauses_and_resumes_admission(
    services: Services, http: httpx.AsyncClient
) -> None:
    """With the admin key typed in, Pause pauses the event and Resume opens it again; a wrong
    key is refused on the page and changes nothing."""
    event_id = (await create_event(http, name="Admin view"))["id"]
    url = f"{services.http_url}/events/{event_id}/admin"
    await _run_scenario("admin", url, services.http_url, event_id)
    assert (await get_event(http, event_id))["state"] == "open"


async def test_page_of_unknown_event_id_shape_is_404(http: httpx.AsyncClient) -> None:
    """A page URL whose id cannot be an event is 404 JSON; page assets are served by name only."""
    resp = await http.get("/events/bad%20id")
    assert resp.status_code == 404
    assert (
        (await http.get("/pages/waitroom.js")).headers["content-type"].startswith("text/javascript")
    )
    assert (await http.get("/pages/..%2Fapp.py")).status_code == 404
