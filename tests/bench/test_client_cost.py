"""``python -m bench.client_cost`` pays through the client against its stub and reports the cost."""

from __future__ import annotations

import pytest

from bench.client_cost import main

pytestmark = pytest.mark.once


@pytest.mark.parametrize("runtime", ["trio", "asyncio"])
def test_it_measures_payments(runtime: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every payment is answered (a failed one would raise) and the cost is printed."""
    assert main(["--runtime", runtime, "--payments", "320"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{runtime}: ") and "client CPU per payment (320 payments" in out
