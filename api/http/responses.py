"""JSON answers encoded with msgspec."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

__all__ = ["json_response"]

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` (a Struct or plain data) as an ``application/json`` answer."""
    return Response(
        _encoder.encode(body), status_code=status, headers=headers, media_type="application/json"
    )
