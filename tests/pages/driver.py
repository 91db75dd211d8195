"""Browser scenarios for tests/pages, run in their own process (see test_pages_browser.py).

``python -m tests.pages.driver SCENARIO PAGE_URL API_URL EVENT_ID ARTIFACTS_DIR``; exits
non-zero with the failure printed when an expectation fails.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import ADMIN_KEY, admin_headers

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def buyer(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Join, wait at position 1 while paused, lose the connection and get it back with the
    same place, get the prompt on resume, pay, see confirmed."""
    expect(page.locator("#event-name")).to_have_text("Aurora live")
    page.select_option("#quantity", "2")
    page.click("#join")
    expect(page.locator("#line-card")).to_be_visible()
    expect(page.locator("#position")).to_have_text("1")
    page.screenshot(path=str(shots / "waitroom-in-line.png"), full_page=True)
    # The network drops: the page reconnects by itself and resumes the same place.
    page.evaluate("socket.close()")
    expect(page.locator("#line-status")).to_contain_text("reconnecting")
    expect(page.locator("#line-status")).to_have_text("You're next.")
    expect(page.locator("#position")).to_have_text("1")
    assert httpx.get(f"{api}/v1/events/{event_id}").json()["queue_length"] == 1
    resp = httpx.post(f"{api}/v1/events/{event_id}/resume", headers=admin_headers())
    assert resp.is_success, resp.text
    expect(page.locator("#prompt-card")).to_be_visible()
    expect(page.locator("#seats li")).to_have_count(2)
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    page.screenshot(path=str(shots / "waitroom-prompt.png"), full_page=True)
    page.click("#pay")
    expect(page.locator("#outcome-card")).to_have_attribute("data-outcome", "confirmed")
    page.screenshot(path=str(shots / "waitroom-confirmed.png"), full_page=True)


def pre_queue(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Joining before the sale opens shows the pre-queue: no position yet, the opening ahead."""
    expect(page.locator("#event-name")).to_have_text("Early birds")
    page.click("#join")
    expect(page.locator("#line-card")).to_be_visible()
    expect(page.locator("#position")).to_have_text("?")
    expect(page.locator("#eta")).to_contain_text("opens in")
    expect(page.locator("#line-status")).to_contain_text("random place")
    page.screenshot(path=str(shots / "waitroom-pre-queue.png"), full_page=True)


def admin(page: Page, api: str, event_id: str, shots: Path) -> None:
    """A wrong key is refused; the right one pauses, then resumes, as the API confirms."""
    expect(page.locator("#state")).to_have_text("open")
    page.fill("#key", "wrong-key")
    page.click("#pause")
    expect(page.locator("#admin-status")).to_contain_text("401")
    page.fill("#key", ADMIN_KEY)
    page.click("#pause")
    expect(page.locator("#state")).to_have_text("paused")
    assert httpx.get(f"{api}/v1/events/{event_id}").json()["state"] == "paused"
    page.screenshot(path=str(shots / "admin-paused.png"), full_page=True)
    page.click("#resume")
    expect(page.locator("#state")).to_have_text("open")
    assert httpx.get(f"{api}/v1/events/{event_id}").json()["state"] == "open"


SCENARIOS: dict[str, Callable[[Page, str, str, Path], None]] = {
    "buyer": buyer,
    "pre_queue": pre_queue,
    "admin": admin,
}


def main(argv: list[str]) -> None:
    """Run one scenario in a fresh headless chromium."""
    name, url, api, event_id, shots = argv
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 860})
            page.set_default_timeout(15_000)
            expect.set_options(timeout=15_000)
            page.goto(url)
            SCENARIOS[name](page, api, event_id, Path(shots))
        finally:
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
