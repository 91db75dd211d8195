"""Browser scenarios for tests/pages, run in their own process (see test_pages_browser.py).

``python -m tests.pages.driver SCENARIO PAGE_URL API_URL EVENT_ID ARTIFACTS_DIR``; exits
non-zero with the failure printed when an expectation fails.

Every state a scenario reaches is shot at two widths (desktop 1280 px, phone 390 px) into
``ARTIFACTS_DIR/pages/`` and checked with axe-core: no serious or critical violation.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect, sync_playwright
from websockets.sync.client import ClientConnection, connect

from storage.dev_smtp import read_maildir
from tests.conftest import ADMIN_KEY

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
#: Viewports every state is shot at.
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
#: axe-core impacts that fail a page.
FAILING_IMPACTS = {"serious", "critical"}

_axe = Axe()
#: The elements wider than the viewport (the page would scroll sideways), as short names.
_WIDER_THAN_VIEWPORT = """() => {
  const width = document.documentElement.clientWidth;
  const scroll = document.documentElement.scrollWidth;
  if (scroll <= width) return [];
  const wide = [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > width + 1)
    .slice(0, 8)
    .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`);
  return [`${scroll} px`, ...wide];
}"""


def shoot(page: Page, shots: Path, name: str) -> None:
    """Screenshot the page at each width and check it with axe-core at each width."""
    out = shots / "pages"
    out.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    try:
        for label, (width, height) in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(150)  # layout settles after the resize
            page.screenshot(path=str(out / f"{name}-{label}.png"), full_page=True)
            wide = page.evaluate(_WIDER_THAN_VIEWPORT)
            assert not wide, f"{name} at {width} px scrolls sideways; too wide: {wide}"
            results = _axe.run(page)
            bad = [
                f"{v['id']} ({v['impact']}): {v['help']} at "
                + ", ".join(str(n["target"]) for n in v["nodes"][:3])
                for v in results.response["violations"]
                if v.get("impact") in FAILING_IMPACTS
            ]
            assert not bad, f"axe-core on {name} at {width} px:\n" + "\n".join(bad)
    finally:
        if before is not None:
            page.set_viewport_size(before)


def _ws_url(api: str, event_id: str) -> str:
    url: str = httpx.get(f"{api}/v1/events/{event_id}").json()["waitroom_url"]
    return url


def _join(ws: ClientConnection, client_id: str, quantity: int = 1) -> None:
    ws.send(json.dumps({"type": "join", "quantity": quantity, "client_id": client_id}))


def _until(ws: ClientConnection, kind: str, wait_s: float = 20) -> dict[str, object]:
    """The first message of type ``kind`` on a raw WebSocket."""
    deadline = time.monotonic() + wait_s
    while True:
        message: dict[str, object] = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        if message["type"] == kind:
            return message


def _pay(api: str, prompt: dict[str, object], key: str) -> str:
    resp = httpx.post(
        f"{api}/v1/holds/{prompt['hold_id']}/payment",
        headers={"Authorization": f"Bearer {prompt['hold_token']}", "Idempotency-Key": key},
        json={"card_token": "tok_visa"},
        timeout=30,
    )
    assert resp.is_success, resp.text
    booking_id: str = resp.json()["id"]
    return booking_id


def index(page: Page, api: str, event_id: str, shots: Path) -> None:
    """The list shows each event with its state, price range and seats, linking its page;
    an unknown event's page is the 404 page with the layout."""
    item = page.locator(".event", has_text="Aurora live")
    expect(item).to_contain_text("On sale")
    expect(item).to_contain_text("£10.00 \u2013 £25.00")
    expect(item).to_contain_text("18 of 18 seats left")
    expect(page.locator(".event", has_text="Gone already")).to_contain_text("Sold out")
    expect(page.locator(".event", has_text="Next season")).to_contain_text("Opens ")
    shoot(page, shots, "index")
    item.locator("a").click()
    expect(page).to_have_url(re.compile(f"/events/{event_id}$"))
    expect(page.locator("#event-name")).to_have_text("Aurora live")
    page.goto(page.url.replace(event_id, "evnosuchevent"))
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).to_contain_text("There is no such event")
    shoot(page, shots, "not-found")


def buyer(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Sections and prices before joining; choose a section; wait behind a buyer who holds
    the only hold (a first estimate, then "finishing checking out"); lose the connection and
    get it back with the same place; that buyer pays, the prompt comes, pay, see confirmed."""
    expect(page.locator("#event-name")).to_have_text("Aurora live")
    expect(page.locator("#sections tr")).to_have_count(2)
    expect(page.locator("#sections")).to_contain_text("£25.00")
    expect(page.locator("#event-sub")).to_contain_text(re.compile(r"CES?T"))  # the buyer's zone
    blocker = connect(_ws_url(api, event_id))
    _join(blocker, "blocker")
    held = _until(blocker, "prompt")
    shoot(page, shots, "buyer-before-join")
    page.get_by_label("A · £25.00").check()
    page.select_option("#quantity", "2")
    page.click("#join")
    expect(page.locator("#line-card")).to_be_visible()
    expect(page.locator("#position")).to_have_text("1")
    expect(page.locator("#eta")).to_have_text(re.compile(r"^(\d+ s|\d+ min|any moment)$"))
    shoot(page, shots, "buyer-waiting")
    # Nobody leaves the line while the buyer ahead checks out: said in words.
    expect(page.locator("#eta-range")).to_contain_text("finish checking out", timeout=30_000)
    shoot(page, shots, "buyer-waiting-stalled")
    # The network drops: the page reconnects by itself and resumes the same place.
    page.evaluate("socket.close()")
    expect(page.locator("#line-status")).to_contain_text("reconnecting")
    expect(page.locator("#line-status")).to_have_text("You're next.")
    expect(page.locator("#position")).to_have_text("1")
    _pay(api, held, "blocker-pays")
    blocker.close()
    expect(page.locator("#prompt-card")).to_be_visible()
    expect(page.locator("#seats li")).to_have_count(2)
    expect(page.locator("#seats li").first).to_contain_text("A · row")
    expect(page.locator("#amount")).to_have_text("£50.00")
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    page.fill("#email", "buyer@example.com")  # the confirmation mail's address (optional)
    shoot(page, shots, "buyer-prompt")
    page.click("#pay")
    expect(page.locator("#outcome-card")).to_have_attribute("data-outcome", "confirmed")
    expect(page.locator("#rejoin")).to_be_hidden()
    shoot(page, shots, "buyer-confirmed")
    # The tickets: seats, amount, a QR code each and the PDF, read with the booking token
    # the page kept; still there when the buyer comes back later (a fresh load).
    page.click("#tickets-link")
    for _ in range(2):
        expect(page.locator("#event-name")).to_have_text("Aurora live")
        expect(page.locator("#booking-seats li")).to_have_count(2)
        expect(page.locator("#booking-amount")).to_have_text("£50.00")
        expect(page.locator("#tickets li .qr svg")).to_have_count(2)
        expect(page.locator("#tickets li .ticket-code").first).to_contain_text("T1.")
        shoot(page, shots, "buyer-tickets")
        page.reload()
    with page.expect_download() as download:
        page.click("#pdf")
    assert download.value.suggested_filename.endswith(".pdf")
    expect(page.locator("#pdf-status")).to_have_text("The PDF is downloaded.")
    # Another browser (no booking token kept): the page says how to get the tickets.
    page.evaluate("localStorage.clear()")
    page.reload()
    expect(page.locator("#missing-card")).to_be_visible()
    expect(page.locator("#booking-card")).to_be_hidden()
    shoot(page, shots, "buyer-tickets-no-key")


def expired(page: Page, api: str, event_id: str, shots: Path) -> None:
    """A hold that runs out offers to get back in line; doing so joins again with a new place."""
    page.click("#join")
    expect(page.locator("#prompt-card")).to_be_visible()
    expect(page.locator("#outcome-card")).to_have_attribute("data-outcome", "expired")
    expect(page.locator("#rejoin")).to_be_visible()
    shoot(page, shots, "buyer-expired")
    page.click("#rejoin")
    expect(page.locator("#join-card")).to_be_visible()
    page.click("#join")
    expect(page.locator("#prompt-card")).to_be_visible()


def sold_out_for_now(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Waiting behind the hold on every seat; it is paid: "sold out for now", the place kept;
    the booking is cancelled: the seats come to the page's buyer, who was next in line."""
    blocker = connect(_ws_url(api, event_id))
    _join(blocker, "takes-all", 2)
    held = _until(blocker, "prompt")
    page.click("#join")
    expect(page.locator("#line-card")).to_be_visible()
    expect(page.locator("#position")).to_have_text("1")
    expect(page.locator("#sold-out-for-now")).to_be_hidden()
    booking_id = _pay(api, held, "takes-all-pays")
    blocker.close()
    expect(page.locator("#sold-out-for-now")).to_be_visible()
    expect(page.locator("#sold-out-for-now")).to_contain_text("keep your place")
    expect(page.locator("#eta-range")).to_have_text("Sold out for now.")
    shoot(page, shots, "buyer-sold-out-for-now")
    resp = httpx.post(
        f"{api}/v1/bookings/{booking_id}/cancel",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Idempotency-Key": "give-back"},
        json={},
        timeout=30,
    )
    assert resp.is_success, resp.text
    expect(page.locator("#prompt-card")).to_be_visible()
    expect(page.locator("#seats li")).to_have_count(1)


def sold_out(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Nothing left: the page says so, with no way to get in line."""
    expect(page.locator("#closed-card")).to_be_visible()
    expect(page.locator("#closed-title")).to_have_text("Sold out")
    expect(page.locator("#join-card")).to_be_hidden()
    expect(page.locator("#join")).to_be_hidden()
    expect(page.locator("#sections")).to_contain_text("Sold out")
    shoot(page, shots, "buyer-sold-out")


def leave(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Leaving the line forgets the place and offers to get back in line."""
    page.click("#join")
    expect(page.locator("#line-card")).to_be_visible()
    page.click("#leave")
    expect(page.locator("#outcome-title")).to_have_text("You left the line")
    expect(page.locator("#rejoin")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def release(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Giving the held seats back ends the hold at once and offers to get back in line."""
    page.click("#join")
    expect(page.locator("#prompt-card")).to_be_visible()
    page.get_by_role("button", name="Give the seats back").click()
    expect(page.locator("#outcome-title")).to_have_text("You gave your seats back")
    expect(page.locator("#rejoin")).to_be_visible()
    shoot(page, shots, "buyer-released")


def challenge(page: Page, api: str, event_id: str, shots: Path) -> None:
    """An event asking for proof of work: the page solves the challenge in a Web Worker and
    takes its place; the admin page shows the difficulty."""
    page.click("#join")
    expect(page.locator("#prompt-card")).to_be_visible(timeout=60_000)
    shoot(page, shots, "buyer-after-challenge")
    page.goto(f"{api}/events/{event_id}/admin")
    expect(page.locator("#difficulty")).to_have_value("20000")


def pre_queue(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Joining before the sale opens shows the pre-queue: no position yet, the opening ahead."""
    expect(page.locator("#event-name")).to_have_text("Early birds")
    page.click("#join")
    expect(page.locator("#line-card")).to_be_visible()
    expect(page.locator("#position")).to_have_text("?")
    expect(page.locator("#eta")).to_contain_text("opens in")
    expect(page.locator("#line-status")).to_contain_text("random place")
    shoot(page, shots, "buyer-pre-queue")


def admin(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Mid-sale: live charts and sections fill in; a wrong key is refused; the right one
    changes the caps, pauses and resumes, as the API confirms. The key is never in the page's
    text or its address."""
    expect(page.locator("#state")).to_have_text("On sale")
    expect(page.locator("#ws-url")).to_contain_text("/waitroom")
    expect(page.locator("#sections tr")).to_have_count(2)
    expect(page.locator("#chart-queue path.line")).to_have_count(1)
    page.fill("#key", "wrong-key")
    page.click("#pause")
    expect(page.locator("#admin-status")).to_contain_text("401")
    page.fill("#key", ADMIN_KEY)
    page.fill("#max-active", "7")
    page.click("#apply-caps")
    expect(page.locator("#admin-status")).to_contain_text("7 holds at once")
    assert httpx.get(f"{api}/v1/events/{event_id}").json()["max_active_holds"] == 7
    page.click("#pause")
    expect(page.locator("#state")).to_have_text("Paused")
    assert httpx.get(f"{api}/v1/events/{event_id}").json()["state"] == "paused"
    page.click("#resume")
    expect(page.locator("#state")).to_have_text("On sale")
    assert httpx.get(f"{api}/v1/events/{event_id}").json()["state"] == "open"
    page.wait_for_timeout(8_000)  # more of the sale on the charts
    expect(page.locator("#chart-sold path.line")).to_have_count(1)
    expect(page.locator("#activity li")).not_to_have_count(0)
    # The report (read with the key): its totals, and its charts drawn from its JSON.
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    report = httpx.get(f"{api}/v1/events/{event_id}/report", headers=headers).json()
    assert report["totals"]["bookings"] > 0, report
    expect(page.locator("#r-revenue")).not_to_have_text("\u2013")  # the placeholder dash
    expect(page.locator("#report-revenue path.line")).to_have_count(1)
    expect(page.locator("#report-sales rect")).not_to_have_count(0)
    expect(page.locator("#report-checkins rect")).not_to_have_count(0)
    # Every event listed, this one marked, each linking its admin page.
    current = page.locator(f'#admin-events a[href="/events/{event_id}/admin"]')
    expect(current).to_have_attribute("aria-current", "page")
    assert ADMIN_KEY not in page.inner_text("body") and ADMIN_KEY not in page.url
    shoot(page, shots, "admin-mid-sale")


def cancel_event(page: Page, api: str, event_id: str, shots: Path) -> None:
    """An event cancelled from the console: once confirmed, the sale closes and the progress
    reaches every booking refunded, as the API says."""
    # Every seat is sold: "Sold out" once the worker looked again, "On sale" until then.
    expect(page.locator("#state")).to_have_text(re.compile("^(On sale|Sold out)$"))
    page.fill("#key", ADMIN_KEY)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-event")
    expect(page.locator("#state")).to_have_text("Closed")
    expect(page.locator("#cancel-progress")).to_contain_text("Event cancelled: 1 of 1 bookings")
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    progress = httpx.get(f"{api}/v1/events/{event_id}/cancellation", headers=headers).json()
    assert (progress["status"], progress["refunded"]) == ("done", 1)
    shoot(page, shots, "admin-event-cancelled")


def checkin(page: Page, api: str, event_id: str, shots: Path) -> None:
    """The door: a wrong key is refused and asked for again; the staff key and gate are typed
    once (kept across a reload); a typed code is let in (green, the seat), then refused as in
    already (red, the time and gate); a cancelled and an unknown code are red; the counts
    follow, here and on the admin page. ``CHECKIN_CODES``: two live codes and a cancelled one
    (comma-separated); ``CHECKIN_KEY``: a staff key of the event."""
    first, second, cancelled = os.environ["CHECKIN_CODES"].split(",")
    key = os.environ["CHECKIN_KEY"]
    expect(page.locator("#event-name")).to_have_text("Check-in · Door night")
    expect(page.locator("#counts")).to_have_text("counts shown once the staff key is entered")
    shoot(page, shots, "checkin-key")
    page.fill("#staff-key", "sk_not-a-key")
    page.fill("#gate", "North")
    page.click("#start")
    page.fill("#code", first)
    page.click("#check")
    expect(page.locator("#key-card")).to_be_visible()
    expect(page.locator("#key-status")).to_contain_text("not a staff key")
    page.fill("#staff-key", key)
    page.fill("#gate", "North")
    page.click("#start")
    expect(page.locator("#gate-name")).to_have_text("North")
    page.reload()  # the key and the gate are kept on the device
    expect(page.locator("#scan-card")).to_be_visible()
    expect(page.locator("#key-card")).to_be_hidden()
    assert key not in page.inner_text("body") and key not in page.url
    expect(page.locator("#counts")).to_have_text("0 of 2 tickets in")  # read with the key
    page.fill("#code", first)
    page.click("#check")
    result = page.locator("#result")
    expect(result).to_have_attribute("data-result", "in")
    expect(page.locator("#result-title")).to_have_text("Welcome in")
    expect(page.locator("#result-detail")).to_have_text(re.compile(r"^A · row R1 · seat \d$"))
    expect(page.locator("#counts")).to_have_text("1 of 2 tickets in")
    shoot(page, shots, "checkin-admitted")
    page.fill("#code", first)
    page.click("#check")
    expect(result).to_have_attribute("data-result", "already")
    expect(page.locator("#result-detail")).to_have_text(
        re.compile(r"^Came in at \d\d:\d\d at gate North \(A · row R1 · seat \d\)\.$")
    )
    shoot(page, shots, "checkin-already-in")
    page.fill("#code", cancelled)
    page.click("#check")
    expect(result).to_have_attribute("data-result", "cancelled")
    expect(page.locator("#result-title")).to_have_text("Cancelled ticket")
    shoot(page, shots, "checkin-cancelled")
    page.fill("#code", second + "-nope")
    page.click("#check")
    expect(result).to_have_attribute("data-result", "unknown")
    expect(page.locator("#result-title")).to_have_text("Unknown ticket")
    page.goto(page.url.removesuffix("/checkin") + "/admin")
    page.fill("#key", ADMIN_KEY)  # the door's counts need the key
    page.dispatch_event("#key", "change")
    expect(page.locator("#checked-in")).to_have_text("1 / 2")
    # The admin makes a staff key for another door (shown once), sees it listed, revokes it.
    page.fill("#staff-label", "East door")
    page.click("#make-key")
    expect(page.locator("#new-key")).to_have_text(re.compile(r"^sk_"))
    expect(page.locator("#staff-keys li")).to_have_count(2)
    made = page.inner_text("#new-key")
    assert made not in page.inner_text("#activity")
    labels = [k["label"] for k in _staff_keys(api, event_id)]
    assert labels == ["North", "East door"], labels
    shoot(page, shots, "admin-staff-keys")
    page.get_by_role("button", name="Revoke the key of East door").click()
    expect(page.locator("#staff-keys li")).to_have_count(1)
    expect(page.locator("#new-key-box")).to_be_hidden()
    assert [k["label"] for k in _staff_keys(api, event_id)] == ["North"]


def buyer_cancels(page: Page, api: str, event_id: str, shots: Path) -> None:
    """The buyer's whole path: join, pay, the tickets with their QR codes and the PDF; then
    cancel one ticket (asked first: saying no changes nothing), see the refund and the ticket
    marked cancelled; then cancel the rest, and the booking is cancelled."""
    page.get_by_label("A · £25.00").check()
    page.select_option("#quantity", "3")
    page.click("#join")
    expect(page.locator("#prompt-card")).to_be_visible()
    expect(page.locator("#amount")).to_have_text("£75.00")
    page.click("#pay")
    expect(page.locator("#outcome-card")).to_have_attribute("data-outcome", "confirmed")
    page.click("#tickets-link")
    expect(page.locator("#tickets li .qr svg")).to_have_count(3)
    with page.expect_download() as download:
        page.click("#pdf")
    assert download.value.suggested_filename.endswith(".pdf")
    expect(page.locator("#cancel-policy")).to_contain_text("refunded in full")
    expect(page.locator("#cancel-tickets input")).to_have_count(3)
    expect(page.locator("#cancel-chosen")).to_be_disabled()
    shoot(page, shots, "buyer-tickets-cancel")
    booking_id = page.locator("#booking-id").inner_text()
    token = page.evaluate(f"localStorage.getItem('booking:{booking_id}:token')")
    seat = page.locator("#cancel-tickets label").nth(1).inner_text().split(" · £")[0]
    page.locator("#cancel-tickets input").nth(1).check()
    page.click("#cancel-chosen")
    expect(page.locator("#cancel-question")).to_contain_text(f"Cancel 1 ticket ({seat})?")
    expect(page.locator("#cancel-question")).to_contain_text("£25.00 is refunded")
    expect(page.locator("#cancel-yes")).to_be_focused()
    shoot(page, shots, "buyer-cancel-confirm")
    page.click("#cancel-no")  # changed their mind: nothing is cancelled
    expect(page.locator("#cancel-confirm")).to_be_hidden()
    assert all(t["live"] for t in _booking(api, booking_id, token)["tickets"])

    page.click("#cancel-chosen")
    page.click("#cancel-yes")
    expect(page.locator("#refund-note")).to_have_text(
        "Cancelled 1 ticket. Refunded £25.00 to the card you paid with."
    )
    expect(page.locator("#refunded-amount")).to_have_text("£25.00")
    expect(page.locator("#tickets li.cancelled")).to_have_count(1)
    expect(page.locator("#tickets li.cancelled")).to_contain_text(f"Cancelled2/3 · {seat}")
    expect(page.locator("#tickets li .qr svg")).to_have_count(2)
    expect(page.locator("#booking-seats li.cancelled")).to_have_text(f"{seat} (cancelled)")
    expect(page.locator("#booking-status")).to_have_text("Confirmed")
    expect(page.locator("#cancel-tickets input")).to_have_count(2)
    shoot(page, shots, "buyer-cancelled-partly")
    page.reload()  # the same, read again
    expect(page.locator("#tickets li.cancelled")).to_have_count(1)
    expect(page.locator("#refunded-amount")).to_have_text("£25.00")

    page.click("#cancel-all")
    expect(page.locator("#cancel-question")).to_contain_text("Cancel your whole booking")
    expect(page.locator("#cancel-question")).to_contain_text("£50.00 is refunded")
    page.click("#cancel-yes")
    expect(page.locator("#refund-note")).to_contain_text("Refunded £50.00")
    expect(page.locator("#booking-status")).to_have_text("Cancelled")
    expect(page.locator("#refunded-amount")).to_have_text("£75.00")
    expect(page.locator("#tickets li.cancelled")).to_have_count(3)
    expect(page.locator("#tickets li .qr svg")).to_have_count(0)
    expect(page.locator("#cancel-card")).to_be_hidden()
    shoot(page, shots, "buyer-cancelled")
    view = _booking(api, booking_id, token)
    assert view["status"] == "cancelled" and not any(t["live"] for t in view["tickets"])


def no_refunds(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Tickets of an event without buyer refunds: the page says so and offers no cancel."""
    page.click("#join")
    expect(page.locator("#prompt-card")).to_be_visible()
    page.click("#pay")
    expect(page.locator("#outcome-card")).to_have_attribute("data-outcome", "confirmed")
    page.click("#tickets-link")
    expect(page.locator("#tickets li .qr svg")).to_have_count(1)
    expect(page.locator("#cancel-policy")).to_have_text(
        "Tickets of this event cannot be cancelled or refunded here."
    )
    expect(page.locator("#cancel-all")).to_be_hidden()
    expect(page.locator("#cancel-chosen")).to_be_hidden()
    shoot(page, shots, "buyer-tickets-no-refunds")


def _booking(api: str, booking_id: str, token: str) -> dict[str, Any]:
    resp = httpx.get(
        f"{api}/v1/bookings/{booking_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    view: dict[str, Any] = resp.json()
    return view


def _staff_keys(api: str, event_id: str) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    resp = httpx.get(f"{api}/v1/events/{event_id}/staff-keys", headers=headers)
    keys: list[dict[str, str]] = resp.json()["keys"]
    return keys


def _mailed_code(address: str, nth: int) -> str:
    """The code of the ``nth`` mail to ``address`` in the maildir SIGNIN_MAILDIR (waited for)."""
    maildir = Path(os.environ["SIGNIN_MAILDIR"])
    deadline = time.monotonic() + 30
    while len(found := [m for m in read_maildir(maildir) if m["To"] == address]) < nth:
        assert time.monotonic() < deadline, f"no mail number {nth} to {address}"
        time.sleep(0.1)
    match = re.search(r"\b(\d{6})\b", str(found[nth - 1]["Subject"]))
    assert match is not None, found[nth - 1]["Subject"]
    return match.group(1)


def _send_code(page: Page, address: str) -> None:
    page.get_by_label("Your email address").fill(address)
    page.get_by_role("button", name="Email me a code").click()


def _type_code(page: Page, code: str) -> None:
    page.get_by_label("The 6-digit code").fill(code)
    page.get_by_role("button", name="Confirm").click()


def email_signin(page: Page, api: str, event_id: str, shots: Path) -> None:
    """An event verifying addresses: sign in first (no join form before); a malformed
    address is caught on the page; the code arrives by mail; a wrong code is said so; after
    too many wrong tries the right code has expired and a new one is sent; confirmed, the
    buyer joins with the proof, solves the challenge and is prompted."""
    status = page.locator("#signin-status")
    expect(page.locator("#signin-card")).to_be_visible()
    expect(page.locator("#join-card")).to_be_hidden()
    shoot(page, shots, "signin-email")
    _send_code(page, "not an address")
    expect(status).to_contain_text("Enter your email address")
    expect(page.locator("#signin-email")).to_have_attribute("aria-invalid", "true")
    _send_code(page, "buyer@example.org")
    expect(page.locator("#code-form")).to_be_visible()
    expect(page.locator("#signin-code")).to_be_focused()
    expect(status).to_contain_text("We emailed a code to buyer@example.org")
    code = _mailed_code("buyer@example.org", 1)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):  # the code's tries (MAX_ATTEMPTS)
        _type_code(page, wrong)
        expect(status).to_contain_text("That code is not right")
        expect(page.locator("#signin-code")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#verify-code")).to_be_enabled()
        page.evaluate("document.getElementById('signin-status').textContent = ''")
    shoot(page, shots, "signin-wrong-code")
    _type_code(page, code)  # right, but out of tries: a new one is needed
    expect(status).to_contain_text("has expired or has been used up")
    expect(page.locator("#email-form")).to_be_visible()
    expect(page.locator("#send-code")).to_be_focused()
    shoot(page, shots, "signin-code-expired")
    page.get_by_role("button", name="Email me a code").click()
    _type_code(page, _mailed_code("buyer@example.org", 2))
    expect(page.locator("#join-card")).to_be_visible()
    expect(page.locator("#signin-card")).to_be_hidden()
    expect(page.locator("#signed-in")).to_have_text(
        "Signed in as buyer@example.org. At most 2 tickets per person."
    )
    expect(page.locator("#join")).to_be_focused()
    shoot(page, shots, "signin-signed-in")
    page.select_option("#quantity", "2")
    page.click("#join")
    expect(page.locator("#prompt-card")).to_be_visible(timeout=60_000)
    shoot(page, shots, "signin-prompt")


def email_rate_limited(page: Page, api: str, event_id: str, shots: Path) -> None:
    """Asking for codes past the route's limit: the page says how long to wait and keeps
    the button off meanwhile."""
    status = page.locator("#signin-status")
    for n in range(3):
        _send_code(page, f"hasty{n}@example.org")
        if n < 2:
            expect(page.locator("#code-form")).to_be_visible()
            page.get_by_role("button", name="Use another address").click()
    expect(status).to_contain_text(
        re.compile(r"Too many tries from here\. Please wait \d+ (s|min) before")
    )
    expect(page.locator("#send-code")).to_be_disabled()
    shoot(page, shots, "signin-rate-limited")


def token_signin(page: Page, api: str, event_id: str, shots: Path) -> None:
    """An event admitting only the operator's buyers: without a token the page says where to
    sign in; with one in the address's fragment it is taken out of the address bar; an
    expired one is refused at join and the page says so; a good one joins and is prompted."""
    base = page.url
    expect(page.locator("#need-identity-card")).to_be_visible()
    expect(page.locator("#join-card")).to_be_hidden()
    expect(page.locator("#signin-card")).to_be_hidden()
    shoot(page, shots, "signin-operator-needed")
    for token, joins in (
        (os.environ["SIGNIN_EXPIRED_TOKEN"], False),
        (os.environ["SIGNIN_TOKEN"], True),
    ):
        page.goto("about:blank")
        page.goto(f"{base}#identity={token}")
        expect(page.locator("#join-card")).to_be_visible()
        assert "identity" not in page.evaluate("location.href"), page.url
        assert page.evaluate("location.href") == base
        expect(page.locator("#signed-in")).to_have_text("Signed in through the organiser's site.")
        page.click("#join")
        if joins:
            expect(page.locator("#prompt-card")).to_be_visible(timeout=60_000)
            shoot(page, shots, "signin-token-prompt")
        else:
            expect(page.locator("#need-identity-card")).to_be_visible()
            expect(page.locator("#need-identity-text")).to_contain_text("could not be used")
            expect(page.locator("#join-card")).to_be_hidden()
            shoot(page, shots, "signin-token-refused")


SCENARIOS: dict[str, Callable[[Page, str, str, Path], None]] = {
    "index": index,
    "buyer": buyer,
    "expired": expired,
    "sold_out": sold_out,
    "sold_out_for_now": sold_out_for_now,
    "leave": leave,
    "release": release,
    "challenge": challenge,
    "pre_queue": pre_queue,
    "admin": admin,
    "cancel_event": cancel_event,
    "checkin": checkin,
    "buyer_cancels": buyer_cancels,
    "no_refunds": no_refunds,
    "email_signin": email_signin,
    "email_rate_limited": email_rate_limited,
    "token_signin": token_signin,
}


def main(argv: list[str]) -> None:
    """Run one scenario in a fresh headless chromium."""
    name, url, api, event_id, shots = argv
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(
                viewport={"width": 1280, "height": 900},
                locale="en-GB",
                timezone_id="Europe/Paris",
            )
            page.set_default_timeout(15_000)
            expect.set_options(timeout=15_000)
            page.goto(url)
            SCENARIOS[name](page, api, event_id, Path(shots))
        finally:
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
