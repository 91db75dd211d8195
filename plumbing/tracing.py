"""The tracing seam: OpenTelemetry spans when configured, nothing at all when not.

Off (the default), nothing of OpenTelemetry is imported and the code paths make
no span object: they test :data:`ENABLED` (a module attribute, read as
``tracing.ENABLED``) before calling anything here. On, :func:`configure` loads
the SDK and an OTLP/HTTP exporter; spans go out in batches from the SDK's own
thread.

A trace crosses processes as a W3C ``traceparent`` string: in HTTP headers, and
in the Redis stream entries of the waiting line and of the outcomes. Batchers
run requests in their own task, so what a batched step needs is the
``traceparent`` carried in its request, not the submitter's context.

This is the one module that imports OpenTelemetry (``tests/test_layers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from plumbing.log_context import TRACE_ID

__all__ = [
    "ENABLED",
    "Attributes",
    "Span",
    "configure",
    "current_traceparent",
    "record",
    "shutdown",
    "span",
    "step",
    "trace_id_of",
]

#: Whether spans are made: test it before calling anything else here.
ENABLED = False

_tracer: Any = None  # opentelemetry.trace.Tracer once configured
_provider: Any = None  # opentelemetry.sdk.trace.TracerProvider once configured

Attributes = Mapping[str, str | int]


def configure(endpoint: str | None, service_name: str, *, exporter: Any = None) -> None:
    """Turn tracing on for this process.

    Spans go over OTLP/HTTP to ``endpoint`` (a collector's base URL, ``/v1/traces``
    is added), in batches; or, when ``exporter`` (an SDK ``SpanExporter``) is
    given, to it as each span ends.
    """
    global ENABLED, _provider, _tracer  # noqa: PLW0603 - one switch per process, set at start
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = (endpoint or "http://localhost:4318").rstrip("/")
        otlp: SpanExporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(otlp))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("booking")
    ENABLED = True


def shutdown() -> None:
    """Export what is pending and turn tracing off."""
    global ENABLED, _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    ENABLED, _provider, _tracer = False, None, None


def trace_id_of(traceparent: str) -> str:
    """The trace id (32 hex digits) of a ``traceparent``; "" if it is not one."""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def _context(parent: str) -> Any:
    """The OpenTelemetry context of ``traceparent`` (None: the current one)."""
    if not parent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": parent})


def _traceparent(span_context: Any) -> str:
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{int(span_context.trace_flags):02x}"
    )


class Span:
    """A span in progress: its ``traceparent`` to hand on, attributes and status to set."""

    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    @property
    def traceparent(self) -> str:
        """This span as a W3C ``traceparent`` (children of it, in any process)."""
        return _traceparent(self._span.get_span_context())

    @property
    def trace_id(self) -> str:
        """The trace's id, 32 hex digits."""
        return f"{self._span.get_span_context().trace_id:032x}"

    def rename(self, name: str) -> None:
        """Name the span (once what it did is known: an HTTP request's route)."""
        self._span.update_name(name)

    def set(self, name: str, value: str | int | float | bool) -> None:
        """Set an attribute."""
        self._span.set_attribute(name, value)

    def fail(self, description: str) -> None:
        """Mark the span failed."""
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, description))


@contextmanager
def span(
    name: str, parent: str = "", *, attributes: Attributes | None = None, server: bool = False
) -> Iterator[Span]:
    """A span current for the ``with`` body, child of ``parent`` (a ``traceparent``;
    "" for the current span, or a new trace). Its trace id is in the log lines
    written meanwhile. Only when :data:`ENABLED`."""
    from opentelemetry.trace import SpanKind

    kind = SpanKind.SERVER if server else SpanKind.INTERNAL
    with _tracer.start_as_current_span(
        name, context=_context(parent), kind=kind, attributes=attributes
    ) as otel_span:
        handle = Span(otel_span)
        token = TRACE_ID.set(handle.trace_id)
        try:
            yield handle
        finally:
            TRACE_ID.reset(token)


_NO_SPAN: AbstractContextManager[None] = nullcontext()


def step(name: str) -> AbstractContextManager[Any]:
    """A span over one step of the current span's work, or (off) a shared do-nothing
    context: ``with tracing.step("charge"):`` costs a call and a test when off."""
    return span(name) if ENABLED else _NO_SPAN


def record(
    name: str, parent: str, start_ns: int, end_ns: int, attributes: Attributes | None = None
) -> Span:
    """A span that already happened (from ``start_ns`` to ``end_ns``, ``time.time_ns()``),
    child of ``parent``: one step of a batch, traced per request after the batch ran."""
    otel_span = _tracer.start_span(
        name, context=_context(parent), attributes=attributes, start_time=start_ns
    )
    otel_span.end(end_time=end_ns)
    return Span(otel_span)


def current_traceparent() -> str:
    """The current span as a ``traceparent`` ("" when tracing is off or no span is current)."""
    if not ENABLED:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return _traceparent(context) if context.is_valid else ""
