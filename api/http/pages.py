"""The web pages: the list of events, the waiting room, the admin console, the buyer's
tickets, the door's check-in page and the 404 page.

Static files under ``api/http/pages``, no build step. A page of an event that does
not exist, like any other unknown path a browser asks for, is the 404 page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from api.http.openapi import HTML, operation
from engine.errors import NotFound
from engine.ids import is_valid_id

__all__ = ["not_found_page", "page_routes", "wants_html"]

_ASSETS = {
    "style.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "index.js": "text/javascript; charset=utf-8",
    "waitroom.js": "text/javascript; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "checkin.js": "text/javascript; charset=utf-8",
    "booking.js": "text/javascript; charset=utf-8",
}
_NO_STORE = {"Cache-Control": "no-store"}
_EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _read(name: str) -> str:
    return (resources.files("api.http") / "pages" / name).read_text()


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not the API, not a script or a client of the JSON)."""
    path = request.url.path
    if path.startswith(("/v1/", "/pages/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def not_found_page(what: str = "This page does not exist.") -> HTMLResponse:
    """The 404 page, with the pages' layout."""
    body = _read("not_found.html").replace("{message}", html.escape(what))
    return HTMLResponse(body, status_code=404, headers=_NO_STORE)


def page_routes() -> list[Route]:
    """``GET /`` (the events), ``/events/{id}`` (waiting room), ``/events/{id}/admin``,
    ``/events/{id}/checkin`` (the door), ``/bookings/{id}`` (the buyer's tickets), and their
    assets."""
    templates = {
        name: _read(name)
        for name in ("waitroom.html", "admin.html", "checkin.html", "index.html", "booking.html")
    }
    assets = {name: _read(name) for name in _ASSETS}

    def page(template: str, summary: str) -> Callable[[Request], Awaitable[Response]]:
        @operation(answers={200: HTML}, errors=[404], summary=summary)
        async def serve(request: Request) -> Response:
            event_id = request.path_params["event_id"]
            known = bool(_EVENT_ID.match(event_id))
            if known:
                try:
                    await request.state.http.engine.catalog.get(event_id)
                except NotFound:
                    known = False
            if not known:
                if wants_html(request):  # a browser: the 404 page; a client of the API: JSON
                    return not_found_page("There is no such event. Check the address.")
                raise NotFound(f"no event {event_id!r}")
            body = templates[template].replace("{event_id}", html.escape(event_id))
            return HTMLResponse(body, headers=_NO_STORE)

        return serve

    @operation(answers={200: HTML}, summary="The list of events")
    async def index(request: Request) -> Response:
        """``GET /``: the events on sale, each linking its waiting room."""
        return HTMLResponse(templates["index.html"], headers=_NO_STORE)

    @operation(answers={200: HTML}, errors=[404], summary="The buyer's tickets")
    async def booking(request: Request) -> Response:
        """``GET /bookings/{id}``: the booking's seats, amount, QR codes and PDF, read in the
        browser with the booking token it keeps (the page itself holds nothing private)."""
        booking_id = request.path_params["booking_id"]
        if not is_valid_id(booking_id):
            if wants_html(request):
                return not_found_page("There is no such booking. Check the address.")
            raise NotFound(f"no booking {booking_id!r}")
        body = templates["booking.html"].replace("{booking_id}", html.escape(booking_id))
        return HTMLResponse(body, headers=_NO_STORE)

    @operation(answers={200: "text/css"}, media=["text/javascript"], errors=[404])
    async def asset(request: Request) -> Response:
        """A stylesheet or script of the pages."""
        name = request.path_params["name"]
        if name not in assets:
            raise NotFound(f"no page asset {name!r}")
        return Response(assets[name], media_type=_ASSETS[name])

    return [
        Route("/", index, methods=["GET"], name="index_page"),
        Route(
            "/events/{event_id}",
            page("waitroom.html", "The buyer's waiting-room page"),
            methods=["GET"],
            name="waitroom_page",
        ),
        Route(
            "/events/{event_id}/admin",
            page("admin.html", "The event's admin page"),
            methods=["GET"],
            name="admin_page",
        ),
        Route(
            "/events/{event_id}/checkin",
            page("checkin.html", "The door staff's check-in page"),
            methods=["GET"],
            name="checkin_page",
        ),
        Route("/bookings/{booking_id}", booking, methods=["GET"], name="booking_page"),
        Route("/pages/{name}", asset, methods=["GET"], name="page_asset"),
    ]
