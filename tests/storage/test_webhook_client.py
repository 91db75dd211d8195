"""The webhook client fails a delivery it cannot send, rather than raising out of the sender."""

from __future__ import annotations

import pytest

from storage.webhook_client import WebhookClient

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "x..example"])
async def test_a_host_name_idna_refuses_is_a_failed_delivery(host: str) -> None:
    client = WebhookClient(1.0)
    try:
        error = await client.send(
            f"https://{host}/hook", "whsec_x", b"{}", webhook_id="wh1", event_id="ev1", seq=1
        )
    finally:
        await client.aclose()
    assert error is not None and error
