"""The v1 interface as documents, generated: OpenAPI 3.1 for REST, JSON Schema for the waiting room.

Each handler declares its operation (``@operation``): summary from its docstring,
the msgspec struct of its body and of each answer by status, its credentials and
headers. :func:`openapi_document` walks the routes and turns the structs into
JSON Schema components with msgspec, so the document cannot drift from the
types the routes decode and encode; a route without an operation is refused.
:func:`waitroom_schema` does the same for the WebSocket messages.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
from starlette.routing import Route

from api.http.schemas import ErrorBody
from realtime import protocol as p

__all__ = ["Operation", "openapi_document", "operation", "operation_of", "waitroom_schema"]

H = TypeVar("H", bound=Callable[..., Any])

#: Who may call an operation: anyone, an admin, a hold's holder, or either of the last two.
Credentials = Literal["none", "admin", "hold", "admin_or_hold", "staff"]

#: Media types of answers that are not JSON.
HTML = "text/html"
TEXT = "text/plain"
JSON = "application/json"

_REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{([a-z_]+)}")

#: Why each error status is answered, for the operations that document it.
_ERRORS = {
    400: "the body, a header or a parameter is invalid",
    401: "credentials are missing or refused",
    402: "the card was declined (the hold stays payable)",
    403: "the credentials are for another hold or booking",
    404: "no such event, hold, booking or page",
    408: "the request body did not arrive in time (the connection is closed)",
    409: "the state does not allow it",
    410: "the ticket was cancelled",
    422: "the body is not a valid request of this operation, or asks for something meaningless",
    429: "too many requests from this address or for this hold; retry after Retry-After seconds",
    503: "Redis or PostgreSQL is unreachable; retry after Retry-After seconds",
    504: "the payment provider did not answer; nothing was charged",
}


@dataclass(frozen=True)
class Operation:
    """How one route is called and what it answers."""

    #: The struct the body is decoded into (None: no body).
    request: type | None = None
    #: Status -> the struct of the answer's JSON body, or a media type for other bodies.
    answers: Mapping[int, type | str] = field(default_factory=dict)
    #: Error statuses it may answer with an ``ErrorBody``.
    errors: tuple[int, ...] = ()
    credentials: Credentials = "none"
    #: Required request headers: name -> what it is.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Query parameters: name -> what it is (all optional strings).
    query: Mapping[str, str] = field(default_factory=dict)
    #: Media types of a 200 whose body is not JSON (e.g. page assets).
    media: tuple[str, ...] = ()
    #: One line on what it does (default: the handler's docstring).
    summary: str = ""
    #: Operations its first success answer leads to: link name -> (operation id,
    #: parameter -> runtime expression), e.g. ``{"event_id": "$response.body#/id"}``.
    links: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    #: A valid body, shown in the document (and sent by schemathesis's examples phase).
    example: Any = None


_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def operation(
    *,
    request: type | None = None,
    answers: Mapping[int, type | str] | None = None,
    errors: Sequence[int] = (),
    credentials: Credentials = "none",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    media: Sequence[str] = (),
    summary: str = "",
    links: Mapping[str, tuple[str, Mapping[str, str]]] | None = None,
    example: Any = None,
) -> Callable[[H], H]:
    """Declare the operation of a route handler (its docstring is the summary unless given)."""
    declared = Operation(
        request, dict(answers or {}), tuple(errors), credentials, dict(headers or {}),
        dict(query or {}), tuple(media), summary, dict(links or {}), example,
    )  # fmt: skip

    def declare(handler: H) -> H:
        _OPERATIONS[handler] = declared
        return handler

    return declare


def operation_of(handler: Callable[..., Any]) -> Operation | None:
    """The operation declared for ``handler``, if any."""
    return _OPERATIONS.get(handler)


def _summary(handler: Callable[..., Any]) -> tuple[str, str]:
    doc = inspect.getdoc(handler) or ""
    first, _, rest = doc.partition("\n")
    # "``POST /v1/events``: create an event." -> "Create an event."
    summary = first.split("``: ", 1)[-1].strip().replace("``", "`")
    return summary[:1].upper() + summary[1:], rest.strip()


#: Groups of operations, by the start of their path (the first that matches).
_TAGS = (
    ("/v1/events", "Events"),
    ("/v1/holds", "Payments and bookings"),
    ("/v1/bookings", "Payments and bookings"),
    ("/v1/checkin", "Check-in"),
    ("/bookings", "Pages"),
    ("/v1/waitroom", "The interface"),
    ("/openapi.json", "The interface"),
    ("/docs", "The interface"),
    ("/events", "Pages"),
    ("/pages", "Pages"),
    ("/", "Operations"),
)


def _tag(path: str) -> str:
    if path == "/":  # the list of events
        return "Pages"
    return next(tag for start, tag in _TAGS if path.startswith(start))


def openapi_document(routes: Sequence[Route], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``; ValueError if a route declares no operation."""
    structs: list[type] = [ErrorBody]
    for route in routes:
        declared = operation_of(route.endpoint)
        if declared is None:
            raise ValueError(f"route {route.path} declares no operation")
        structs += [
            t for t in (declared.request, *declared.answers.values()) if isinstance(t, type)
        ]
    unique = list(dict.fromkeys(structs))
    refs, components = msgspec.json.schema_components(unique, ref_template=_REF)
    ref_of = dict(zip(unique, refs, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        declared = operation_of(route.endpoint)
        assert declared is not None
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, declared, ref_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "REST interface of the booking engine. Errors are `{error, message}` with a "
                "fitting status. The waiting room is a WebSocket (URL in `GET /v1/events/{id}`, "
                "messages in `GET /v1/waitroom/schema.json`)."
            ),
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(tag for _, tag in _TAGS)],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "adminKey": {"type": "http", "scheme": "bearer", "description": "the admin key"},
                "holdToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the hold token of a `prompt` message; reading a booking "
                    "also takes its booking token (the payment's answer)",
                },
                "staffKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a staff key of the event (`POST /v1/events/{id}/staff-keys`)",
                },
            },
        },
    }


def _operation(
    route: Route, declared: Operation, ref_of: Mapping[type, dict[str, Any]]
) -> dict[str, Any]:
    summary, description = _summary(route.endpoint)
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": declared.summary or summary,
        "tags": [_tag(route.path)],
    }
    if description:
        op["description"] = description
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    parameters += [
        {"name": name, "in": "header", "required": True, "description": what,
         "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
        for name, what in declared.headers.items()
    ]  # fmt: skip
    parameters += [
        {"name": name, "in": "query", "required": False, "description": what,
         "schema": {"type": "string"}}
        for name, what in declared.query.items()
    ]  # fmt: skip
    if parameters:
        op["parameters"] = parameters
    if declared.request is not None:
        request: dict[str, Any] = {"schema": ref_of[declared.request]}
        if declared.example is not None:
            request["example"] = declared.example
        op["requestBody"] = {"required": True, "content": {JSON: request}}
    schemes = {
        "none": (),
        "admin": ("adminKey",),
        "hold": ("holdToken",),
        "admin_or_hold": ("adminKey", "holdToken"),
        "staff": ("staffKey",),
    }[declared.credentials]
    security: list[dict[str, list[str]]] = [{scheme: []} for scheme in schemes]
    if security:
        op["security"] = security
    responses: dict[str, Any] = {}
    for status, body in declared.answers.items():
        if isinstance(body, str):  # a document or a page: its media type says what it is
            media = (body, *declared.media)
            content = {m: {"schema": {"type": "object" if m == JSON else "string"}} for m in media}
        else:
            content = {JSON: {"schema": ref_of[body]}}
        responses[str(status)] = {"description": _answer(status), "content": content}
    if declared.links:
        first = str(min(declared.answers))
        responses[first]["links"] = {
            name: {"operationId": target, "parameters": dict(parameters)}
            for name, (target, parameters) in declared.links.items()
        }
    for status in declared.errors:
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": {JSON: {"schema": ref_of[ErrorBody]}},
        }
    op["responses"] = responses
    return op


def _answer(status: int) -> str:
    return {200: "done", 201: "created"}.get(status, "answered")


def waitroom_schema() -> dict[str, Any]:
    """JSON Schema of the waiting room's messages, each direction a union tagged by ``type``."""
    (client, server), components = msgspec.json.schema_components(
        [p.ClientMessage, p.ServerMessage], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Waiting-room WebSocket messages, v1",
        "description": (
            "JSON text frames on WS /v1/events/{id}/waitroom. `client` is what a client "
            "sends, `server` what it is sent; clients should ignore server types they do "
            "not know."
        ),
        "type": "object",
        "properties": {"client": client, "server": server},
        "$defs": components,
    }
