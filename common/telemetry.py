"""Traces: the one place that names kiln's span attributes and sets up the tracer provider.

Server and worker both call `configure_tracing`. Nothing is recorded unless
KILN_OTLP_ENDPOINT (spans batched to an OpenTelemetry collector over OTLP/gRPC) or
KILN_TRACE_FILE (every finished span written at once as a JSON line, for tests and quick
looks) is set; otherwise the API's no-op tracer stays in place and the instrumentation is
not installed, so tracing costs next to nothing when it is off.

A task carries its trace as a W3C `traceparent` string (in the tasks table, the task
outbox, the Pub/Sub message attributes and the worker's Task message). Anything that is
not a valid traceparent is ignored: the work then starts a trace of its own.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# --- Attribute names (every kiln span attribute is named here) ---------------------------
JOB_ID = "kiln.job.id"
TASK_ID = "kiln.task.id"
TASK_KIND = "kiln.task.kind"
TASK_ATTEMPT = "kiln.task.attempt"
OUTPUT_ID = "kiln.output.id"
OUTPUT_TYPE = "kiln.output.type"
WORKER_ID = "kiln.worker.id"
DISPATCH_BACKEND = "kiln.dispatch.backend"
PRIORITY = "kiln.priority"
TOPIC = "messaging.destination.name"
MESSAGING_SYSTEM = "messaging.system"
INPUT_SCHEME = "kiln.input.scheme"
INPUT_STAGED = "kiln.input.staged"
INPUT_DURATION_SECONDS = "kiln.input.duration_seconds"
INPUT_CONTAINER = "kiln.input.container"
ENCODE_CODEC = "kiln.encode.codec"
ENCODE_RESOLUTION = "kiln.encode.resolution"
ENCODE_MEDIA_SECONDS = "kiln.encode.media_seconds"
ENCODE_REALTIME_FACTOR = "kiln.encode.realtime_factor"
UPLOAD_FILES = "kiln.upload.files"
UPLOAD_BYTES = "kiln.upload.bytes"
OUTPUT_ORIGIN = "kiln.output.origin"
ERROR_CODE = "kiln.error.code"

# --- Span names (kiln's own spans; RPC and database spans are named by their libraries) ---
SPAN_DISPATCH_PUBLISH = "kiln.dispatch.publish"
SPAN_DISPATCH_CLAIM = "kiln.dispatch.claim"
SPAN_WORKER_TASK = "kiln.worker.task"
SPAN_STAGE_IN = "kiln.worker.stage_in"
SPAN_PROBE = "kiln.worker.probe"
SPAN_ENCODE = "kiln.worker.encode"
SPAN_PACKAGE = "kiln.worker.package"
SPAN_UPLOAD = "kiln.worker.upload"

ENDPOINT_SETTING = "KILN_OTLP_ENDPOINT"
TRACE_FILE_SETTING = "KILN_TRACE_FILE"
# A traceparent is 55 characters; the column leaves room, anything longer is not one.
MAX_TRACEPARENT = 64

_W3C = TraceContextTextMapPropagator()
_lock = threading.Lock()
_provider: TracerProvider | None = None


class FileSpanExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (KILN_TRACE_FILE).

    Meant for tests and local looks at a trace: with a SimpleSpanProcessor every span is
    on disk when it ends, so another process can read them without a collector.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span), default=str) + "\n" for span in spans)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_record(span: ReadableSpan) -> dict[str, object]:
    """A span as plain data: names, ids in hex (as W3C writes them), attributes."""
    context = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name", ""),
        "trace_id": format(context.trace_id, "032x") if context else "",
        "span_id": format(context.span_id, "016x") if context else "",
        "parent_span_id": format(parent.span_id, "016x") if parent else "",
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [format(link.context.span_id, "016x") for link in span.links],
    }


def configure_tracing(
    service_name: str, env: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """The process's tracer provider, or None when nothing would be exported.

    The first call in a process decides (`kiln up` runs server and worker in one process:
    they share one provider, named after whichever part set it up first).
    """
    global _provider  # noqa: PLW0603 - one provider per process, as OpenTelemetry's global
    env = os.environ if env is None else env
    endpoint = env.get(ENDPOINT_SETTING, "").strip()
    trace_file = env.get(TRACE_FILE_SETTING, "").strip()
    if not endpoint and not trace_file:
        return None
    with _lock:
        if _provider is not None:
            return _provider
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        if trace_file:
            provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(Path(trace_file))))
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


def tracing_enabled() -> bool:
    return _provider is not None


def tracer(name: str) -> trace.Tracer:
    """A tracer from the global provider: the no-op one unless tracing was configured."""
    return trace.get_tracer(name)


def current_traceparent() -> str:
    """The W3C traceparent of the current span, or "" when nothing is being traced."""
    if not trace.get_current_span().get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context | None:
    """The remote parent a traceparent names, or None (a new trace) for anything that is
    not a valid W3C traceparent: bad input from a task or a header is never an error."""
    if not traceparent or len(traceparent) > MAX_TRACEPARENT:
        return None
    extracted = _W3C.extract({"traceparent": traceparent}, context=otel_context.Context())
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    return extracted


def valid_traceparent(traceparent: str | None) -> str:
    """`traceparent` if it is a valid W3C traceparent, else ""."""
    return (traceparent or "") if context_from_traceparent(traceparent) is not None else ""


def trace_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span in hex, or ("", "") outside any trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
