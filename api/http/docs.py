"""The interface's reading page, ``GET /docs``: rendered once from the generated documents.

No script and nothing fetched from elsewhere: the operations grouped by tag, each
with its credentials, parameters, body and answers, then every WebSocket message
with its fields, then the schemas, each name a link to its definition.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

__all__ = ["docs_page"]

_METHOD_ORDER = {"get": 0, "post": 1, "patch": 2, "put": 3, "delete": 4}
_CODE = re.compile(r"`([^`]+)`")

_STYLE = """
.op { border: 1px solid #d5d9e0; border-radius: 8px; padding: 0.6rem 1rem; margin: 0.8rem 0;
      background: #fff; }
.op h3 { margin: 0.2rem 0; font-size: 1rem; }
.op p, .op ul { margin: 0.3rem 0; }
.method { display: inline-block; min-width: 4.2em; text-align: center; border-radius: 4px;
          padding: 0 0.4em; margin-right: 0.4em; color: #fff; font-size: 0.85em; }
.get { background: #2f6f9f; } .post { background: #2e7d4f; } .patch { background: #8a5a00; }
.who { color: #555; font-size: 0.9em; }
nav > ul { columns: 2; padding-left: 1.2rem; }
nav > ul > li { break-inside: avoid; margin-bottom: 0.5rem; }
nav ul ul { columns: 1; padding-left: 1rem; font-size: 0.9em; }
@media (max-width: 700px) { nav > ul { columns: 1; } }
"""


def _text(value: str) -> str:
    """Escaped text with `code` spans."""
    return _CODE.sub(r"<code>\1</code>", escape(value))


def _name(schema: dict[str, Any]) -> str:
    """A schema as a short name: its component (linked), or its type."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    if "anyOf" in schema:
        return " | ".join(_name(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_name(schema.get('items', {}))}"
    return escape(str(schema.get("type", "any")))


def _fields(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = []
    for field, spec in schema.get("properties", {}).items():
        need = "" if field in required else " <span class='who'>(optional)</span>"
        rows.append(f"<li><code>{escape(field)}</code>: {_name(spec)}{need}</li>")
    return f"<ul>{''.join(rows)}</ul>" if rows else "<p class='who'>no fields</p>"


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    security = op.get("security", [])
    who = " or ".join(next(iter(s)) for s in security) if security else "anyone"
    parts = [
        f'<section class="op" id="{escape(op["operationId"])}">',
        f'<h3><span class="method {method}">{method.upper()}</span><code>{escape(path)}</code></h3>',
        f"<p>{_text(op['summary'])} <span class='who'>Credentials: {escape(who)}</span></p>",
    ]
    params = op.get("parameters", [])
    if params:
        items = "".join(
            f"<li><code>{escape(p['name'])}</code> ({escape(p['in'])})"
            f"{': ' + _text(p['description']) if 'description' in p else ''}</li>"
            for p in params
        )
        parts.append(f"<p>Parameters:</p><ul>{items}</ul>")
    body = op.get("requestBody")
    if body:
        parts.append(f"<p>Body: {_name(body['content']['application/json']['schema'])}</p>")
    answers = []
    for status, answer in op["responses"].items():
        kinds = ", ".join(
            _name(c["schema"]) if media == "application/json" else escape(media)
            for media, c in answer.get("content", {}).items()
        )
        answers.append(
            f"<li>{escape(status)}: {kinds} <span class='who'>{_text(answer['description'])}</span></li>"
        )
    parts.append(f"<p>Answers:</p><ul>{''.join(answers)}</ul></section>")
    return "\n".join(parts)


def docs_page(openapi: dict[str, Any], waitroom: dict[str, Any]) -> str:
    """The HTML page of the OpenAPI document and the WebSocket messages' schema."""
    tags = [t["name"] for t in openapi["tags"]]
    ops = sorted(
        (
            (path, method, op)
            for path, item in openapi["paths"].items()
            for method, op in item.items()
        ),
        key=lambda x: (tags.index(x[2]["tags"][0]), x[0], _METHOD_ORDER.get(x[1], 9)),
    )
    index, sections = [], []
    for tag in tags:
        group = [(path, m, op) for path, m, op in ops if op["tags"][0] == tag]
        if not group:
            continue
        links = "".join(
            f'<li><a href="#{escape(op["operationId"])}"><code>{m.upper()} {escape(path)}</code></a></li>'
            for path, m, op in group
        )
        index.append(f"<li>{escape(tag)}<ul>{links}</ul></li>")
        sections.append(
            f"<h2>{escape(tag)}</h2>" + "".join(_operation(m, p, o) for p, m, o in group)
        )
    messages = []
    for direction in ("client", "server"):
        for ref in waitroom["properties"][direction]["anyOf"]:
            name = ref["$ref"].rsplit("/", 1)[-1]
            schema = waitroom["$defs"][name]
            tag = schema["properties"]["type"]["enum"][0]
            doc = _text(schema.get("description", "").split("\n")[0])
            to = "server" if direction == "client" else "client"
            messages.append(
                f'<section class="op" id="ws-{escape(tag)}"><h3><code>{escape(tag)}</code> '
                f"<span class='who'>{direction} → {to}</span></h3><p>{doc}</p>{_fields(schema)}</section>"
            )
    schemas = "".join(
        f'<section class="op" id="schema-{escape(name)}"><h3>{escape(name)}</h3>'
        f"<p>{_text(schema.get('description', '').split(chr(10))[0])}</p>{_fields(schema)}</section>"
        for name, schema in sorted(openapi["components"]["schemas"].items())
    )
    info = openapi["info"]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(info["title"])} API {escape(info["version"])}</title>
<link rel="stylesheet" href="/pages/style.css">
<style>{_STYLE}</style>
</head>
<body>
<main>
<h1>{escape(info["title"])} API <small>{escape(info["version"])}</small></h1>
<p>{_text(info["description"])}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1),
<a href="/v1/waitroom/schema.json">/v1/waitroom/schema.json</a> (WebSocket messages, JSON Schema).</p>
<nav aria-label="Operations"><ul>{"".join(index)}<li><a href="#waitroom">Waiting-room WebSocket</a></li></ul></nav>
{"".join(sections)}
<h2 id="waitroom">Waiting-room WebSocket</h2>
{"".join(messages)}
<h2>Schemas</h2>
{schemas}
</main>
</body>
</html>
"""
