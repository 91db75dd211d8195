"""Where a bench run's results go: its JSON and its plots."""

from __future__ import annotations

from pathlib import Path

from bench.harness import BenchReport
from bench.plots import write_plots

__all__ = ["write_outputs"]


def write_outputs(report: BenchReport, json_path: Path | None, plots_dir: Path | None) -> None:
    """The JSON results and the plots, where asked."""
    if json_path is not None:
        json_path.write_bytes(report.to_json())
    if plots_dir is not None:
        write_plots(report, plots_dir)
