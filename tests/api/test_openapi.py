"""The generated interface documents cover every route and message, and the live server keeps to them."""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

import anyio
import httpx
import pytest

from api.http.app import ROUTES
from api.http.openapi import openapi_document, operation
from api.wiring import Services
from realtime import protocol as p
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.anyio


def _tags(union: object) -> set[str]:
    return {m.__struct_config__.tag for m in typing.get_args(union)}  # type: ignore[attr-defined]


async def test_every_route_is_in_the_openapi_document(http: httpx.AsyncClient) -> None:
    """/openapi.json has each route of the app with each of its methods, and nothing else."""
    resp = await http.get("/openapi.json")
    assert resp.status_code == 200
    document = resp.json()
    assert document["openapi"] == "3.1.0"
    documented = {(path, m.upper()) for path, item in document["paths"].items() for m in item}
    routed = {(r.path, m) for r in ROUTES for m in (r.methods or set()) - {"HEAD"}}
    assert documented == routed
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operation ids are unique"


@pytest.mark.once
def test_a_route_without_an_operation_is_refused() -> None:
    """The document is generated from the routes: an undeclared route is an error, not a gap."""
    from starlette.responses import Response
    from starlette.routing import Route

    async def undeclared(request: object) -> Response:
        return Response()

    with pytest.raises(ValueError, match="/nowhere declares no operation"):
        openapi_document([*ROUTES, Route("/nowhere", undeclared)], title="t", version="0")

    declared = operation(answers={200: "text/plain"})(undeclared)
    document = openapi_document([Route("/nowhere", declared)], title="t", version="0")
    assert list(document["paths"]) == ["/nowhere"]


async def test_every_message_is_in_the_waitroom_schema(http: httpx.AsyncClient) -> None:
    """/v1/waitroom/schema.json has every client and server message, tagged by type."""
    resp = await http.get("/v1/waitroom/schema.json")
    assert resp.status_code == 200
    schema = resp.json()
    for direction, union in (("client", p.ClientMessage), ("server", p.ServerMessage)):
        names = [r["$ref"].rsplit("/", 1)[-1] for r in schema["properties"][direction]["anyOf"]]
        tags = {schema["$defs"][n]["properties"]["type"]["enum"][0] for n in names}
        assert tags == _tags(union), direction


async def test_docs_page_lists_every_operation_and_message(http: httpx.AsyncClient) -> None:
    """/docs is a page with an entry per operation and per WebSocket message."""
    resp = await http.get("/docs")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    document = (await http.get("/openapi.json")).json()
    for item in document["paths"].values():
        for op in item.values():
            assert f'id="{op["operationId"]}"' in resp.text
    for tag in _tags(p.ClientMessage) | _tags(p.ServerMessage):
        assert f'id="ws-{tag}"' in resp.text


@pytest.mark.slow
@pytest.mark.once  # the document and the validation are the same code on both runtimes
async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    services: Services, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Generated requests to every operation (examples, coverage, fuzzing, and stateful runs
    following the document's links from created events and bookings), with the admin key:
    no 5xx, and every answer's status, media type, headers and body match the document."""
    report = tmp_path / "report.json"
    argv = [sys.executable, "-m", "schemathesis.cli", "run", f"{services.http_url}/openapi.json"]
    argv += ["--checks", ",".join(CHECKS), "--max-examples", "20", "--seed", "20261130"]
    argv += ["--phases", "examples,coverage,fuzzing,stateful", "--workers", "1", "--no-color"]
    argv += ["--header", f"Authorization: Bearer {ADMIN_KEY}", "--request-timeout", "30"]
    argv += ["--generation-database", "none", "--report", "json", "--report-json-path", str(report)]
    result = await anyio.run_process(argv, check=False, cwd=tmp_path)  # its caches stay there
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-6000:]
    summary = json.loads(report.read_text())
    document = (await http.get("/openapi.json")).json()
    operations = sum(len(item) for item in document["paths"].values())
    # Every operation but the document's own URL, which schemathesis leaves out.
    assert summary["operations"]["tested"] == operations - 1, output[-3000:]
    assert summary["test_cases"]["generated"] >= 20 * summary["operations"]["tested"]
    assert summary["test_cases"]["with_failures"] == 0


#: What every answer is checked for.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


@pytest.mark.once
def test_each_view_keeps_the_fields_of_the_record_it_shows() -> None:
    """The wire views the routes build from engine records have the records' fields and types
    (AuditView adds ``ok``), so a field added to a record is not silently left off the wire."""
    import msgspec

    from api.http.schemas import AuditView, CheckinCountsView, SectionAvailability, TicketView
    from engine.audit import Audit
    from engine.bookings import Ticket
    from engine.checkin import CheckinCounts
    from engine.sales import SectionSale

    def fields(kind: type) -> dict[str, object]:
        return {f.name: f.type for f in msgspec.structs.fields(kind)}

    assert fields(TicketView) == fields(Ticket)
    assert fields(SectionAvailability) == fields(SectionSale)
    assert fields(AuditView) == {**fields(Audit), "ok": bool}
    assert fields(CheckinCountsView) == fields(CheckinCounts)
