"""The waiting-room and admin web pages: static files under ``api/http/pages``, no build step."""

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

__all__ = ["page_routes"]

_ASSETS = {
    "style.css": "text/css; charset=utf-8",
    "waitroom.js": "text/javascript; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
}
_EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _read(name: str) -> str:
    return (resources.files("api.http") / "pages" / name).read_text()


def page_routes() -> list[Route]:
    """``GET /events/{id}`` (waiting room), ``/events/{id}/admin``, and their assets."""
    templates = {name: _read(name) for name in ("waitroom.html", "admin.html")}
    assets = {name: _read(name) for name in _ASSETS}

    def page(template: str, summary: str) -> Callable[[Request], Awaitable[Response]]:
        @operation(answers={200: HTML}, errors=[404], summary=summary)
        async def serve(request: Request) -> Response:
            event_id = request.path_params["event_id"]
            if not _EVENT_ID.match(event_id):
                raise NotFound(f"no event {event_id!r}")
            body = templates[template].replace("{event_id}", html.escape(event_id))
            return HTMLResponse(body, headers={"Cache-Control": "no-store"})

        return serve

    @operation(answers={200: "text/css"}, media=["text/javascript"], errors=[404])
    async def asset(request: Request) -> Response:
        """A stylesheet or script of the pages."""
        name = request.path_params["name"]
        if name not in assets:
            raise NotFound(f"no page asset {name!r}")
        return Response(assets[name], media_type=_ASSETS[name])

    return [
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
        Route("/pages/{name}", asset, methods=["GET"], name="page_asset"),
    ]
