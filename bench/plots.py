"""PNG plots of a bench run (matplotlib, Agg): admissions over time, queue length, latency CDF."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness import BenchReport

__all__ = ["write_plots"]


def write_plots(report: BenchReport, directory: Path) -> list[Path]:
    """Write the run's plots under ``directory``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    t0 = report.started_at
    written: list[Path] = []

    admitted = sorted(r.admitted_at - t0 for r in report.results if r.prompted_at)
    confirmed = sorted(r.ended_at - t0 for r in report.results if r.outcome == "confirmed")
    fig, ax = plt.subplots(figsize=(8, 4))
    if admitted:
        ax.plot(admitted, range(1, len(admitted) + 1), label="admitted")
    if confirmed:
        ax.plot(confirmed, range(1, len(confirmed) + 1), label="confirmed")
    if report.opened_at:
        ax.axvline(report.opened_at - t0, color="grey", linestyle=":", label="sale opens")
    ax.set(xlabel="time since start (s)", ylabel="clients", title=f"Admissions: {report.scenario}")
    _legend(ax)
    written.append(_save(fig, directory / "admissions.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(
        [s.elapsed_s for s in report.samples],
        [s.queue_length for s in report.samples],
        label="in line",
    )
    ax.plot(
        [s.elapsed_s for s in report.samples],
        [s.active_holds for s in report.samples],
        label="holds open",
    )
    ax.set(xlabel="time since start (s)", ylabel="clients", title="Queue length")
    ax.legend()
    written.append(_save(fig, directory / "queue.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    for label, values in (
        ("admission -> prompt", report.latencies),
        ("payment (buyer)", [r.payment_s for r in report.results if r.payment_status == 200]),
    ):
        if values:
            xs = sorted(v * 1000 for v in values)
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=label)
    ax.set(xlabel="latency (ms)", ylabel="share of clients", title="Latency CDF", xscale="log")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)
    written.append(_save(fig, directory / "latency_cdf.png"))
    return written


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=90)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
