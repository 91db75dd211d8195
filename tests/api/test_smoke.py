"""The running system answers its health routes."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.anyio
async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    """/healthz and /readyz answer 200 when Redis and PostgreSQL are up."""
    assert (await http.get("/healthz")).text == "ok"
    assert (await http.get("/readyz")).text == "ready"
