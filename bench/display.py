"""The sale's progress for people: a live display on a terminal, plain lines otherwise.

On a terminal (stdout and stderr both), a ``rich`` live display on stderr shows bars
of buyers joined, admitted and paid, the counts waiting, holding and sold, and rates
over the last few seconds; log records and notes print above it. Anywhere else (a
log file, a pipe, CI) it prints a plain line every few seconds: no carriage returns,
no cursor movement. Every frame is counted by ``bench.tally``, the summary's counter.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bench.tally import RateWindow, Tally

__all__ = ["ProgressSink", "SaleDisplay", "SaleFrame", "plain_line", "plural"]


@dataclass(frozen=True)
class SaleFrame:
    """The sale at one moment."""

    elapsed_s: float  # since the buyers were started
    clients: int  # buyers in the run
    capacity: int  # seats on sale
    tally: Tally
    interrupted: bool = False  # the sale was stopped before its end


class ProgressSink:
    """Where the harness reports: the base class shows nothing."""

    def note(self, text: str) -> None:
        """A line for the reader (an address to visit, a process's complaint)."""

    def show(self, frame: SaleFrame, *, final: bool = False) -> None:
        """The sale now; ``final``: the finished sale, counted as the summary counts it."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 bench process``, ``2 bench processes``."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def plain_line(frame: SaleFrame, rates: RateWindow) -> str:
    """One frame as one line of text."""
    t = frame.tally
    stopped = " (interrupted)" if frame.interrupted else ""
    return (
        f"sale {frame.elapsed_s:6.1f} s{stopped}: joined {t.joined}/{frame.clients} "
        f"({rates.per_s('joined'):.0f}/s), admitted {t.admitted} ({rates.per_s('admitted'):.1f}/s), "
        f"paid {t.confirmed} ({rates.per_s('confirmed'):.1f}/s); waiting {t.waiting}, "
        f"holding {t.holding}, sold {t.seats_sold}/{frame.capacity} seats; "
        f"expired {t.expired}, sold out {t.sold_out}, left {t.left}, errors {t.errors}"
    )


class SaleDisplay(ProgressSink):
    """The progress of one sale on stderr; use as a context manager around the sale.

    ``live``: None picks the live display when stdout and stderr are terminals.
    ``every_s``: how often a plain line is printed (the live display redraws each frame).
    """

    def __init__(
        self,
        *,
        live: bool | None = None,
        file: TextIO | None = None,
        every_s: float = 5.0,
        window_s: float = 5.0,
    ) -> None:
        self.file = file or sys.stderr  # where frames and notes go
        if live is None:
            live = Console(file=self.file).is_terminal and sys.stdout.isatty()
        self.every_s = every_s  # between plain lines, s
        self.rates = RateWindow(window_s)  # the rates a frame shows
        self._live: Live | None = (
            Live(
                console=Console(file=self.file, force_terminal=True),
                auto_refresh=False,
                transient=False,
            )
            if live
            else None
        )  # None: plain lines
        self._printed_at: float | None = None  # elapsed time of the last plain line
        self._streams: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []  # rerouted logs

    def __enter__(self) -> SaleDisplay:
        if self._live is not None:
            self._live.start()
            # The live display replaced sys.stderr with a proxy that prints above it;
            # log handlers hold the real stream, so point them at the proxy meanwhile.
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self.file:
                    old = handler.setStream(sys.stderr)
                    if old is not None:
                        self._streams.append((handler, old))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            for handler, stream in self._streams:
                handler.setStream(stream)
            self._streams.clear()

    def note(self, text: str) -> None:
        """Print ``text`` (above the live display)."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.file, flush=True)

    def show(self, frame: SaleFrame, *, final: bool = False) -> None:
        """Draw ``frame``: every frame when live, a plain line every ``every_s`` and the last."""
        self.rates.add(frame.elapsed_s, frame.tally)
        if self._live is not None:
            self._live.update(self._render(frame, final), refresh=True)
            return
        due = self._printed_at is None or frame.elapsed_s - self._printed_at >= self.every_s
        if final or due:
            self._printed_at = frame.elapsed_s
            print(plain_line(frame, self.rates), file=self.file, flush=True)

    def _render(self, frame: SaleFrame, final: bool) -> Group:
        t, rates = frame.tally, self.rates
        grid = Table.grid(padding=(0, 1))
        for _ in range(4):
            grid.add_column()
        grid.columns[2].justify = grid.columns[3].justify = "right"
        for label, count, field in (
            ("joined", t.joined, "joined"),
            ("admitted", t.admitted, "admitted"),
            ("paid", t.confirmed, "confirmed"),
        ):
            grid.add_row(
                label,
                ProgressBar(total=max(frame.clients, 1), completed=count, width=40),
                f"{count:,} / {frame.clients:,}",
                "" if final else f"{rates.per_s(field):,.1f}/s",
            )
        state = f"rates over the last {rates.window_s:g} s"
        if final:
            state = "interrupted" if frame.interrupted else "done"
        counts = Text.assemble(
            ("waiting ", "dim"),
            f"{t.waiting:,}",
            ("   holding ", "dim"),
            f"{t.holding:,}",
            ("   sold ", "dim"),
            f"{t.seats_sold:,} / {frame.capacity:,} seats",
            ("   expired ", "dim"),
            f"{t.expired:,}",
            ("   sold out ", "dim"),
            f"{t.sold_out:,}",
            ("   left ", "dim"),
            f"{t.left:,}",
            ("   errors ", "dim"),
            (f"{t.errors:,}", "bold red" if t.errors else ""),
        )
        head = Text.assemble(("sale ", "bold"), f"{frame.elapsed_s:.1f} s  ", (state, "dim"))
        return Group(head, grid, counts)
