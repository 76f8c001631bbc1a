"""The server's spans: every RPC on both gRPC listeners and on Connect, every database
statement, and the dispatch steps (publish, claim) that carry a job's trace to a worker.

Installed only when tracing is configured (common.telemetry); otherwise the listeners get
no interceptors and the engine no listeners. The dispatch spans below go through the
API's tracer either way, which is a no-op then.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from common import telemetry as t
from common.log_setup import job_log_context

from .domain.new_records import NewTask
from .store.models import Task
from .store.task_outbox import OutboxEntry

SERVICE_NAME = "kiln-server"
_tracer = t.tracer("kiln.server")


def setup_tracing(engine: Any) -> bool:
    """Sets up the tracer provider and database spans on `engine` (an AsyncEngine); True
    when spans are recorded, so the listeners should be instrumented too."""
    provider = t.configure_tracing(SERVICE_NAME)
    if provider is None:
        return False
    from opentelemetry.instrumentation.sqlalchemy import __version__ as sqlalchemy_version
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    # EngineTracer hooks one engine's events (the instrumentor would also patch every
    # create_engine in the process, Alembic's included).
    EngineTracer(
        trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", sqlalchemy_version),
        engine.sync_engine,
        NoOpMeter("kiln").create_up_down_counter("db.client.connections.usage"),
    )
    return True


def grpc_interceptors(traced: bool) -> list[Any]:
    """A server span per call, continuing the caller's `traceparent` metadata if valid."""
    if not traced:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]


def connect_interceptors(traced: bool) -> list[Any]:
    """A server span per Connect call (and gRPC-web), continuing a `traceparent` header."""
    if not traced:
        return []
    from connectrpc_otel import OpenTelemetryInterceptor

    return [OpenTelemetryInterceptor()]


def stamp_tasks(tasks: Sequence[NewTask]) -> list[NewTask]:
    """New tasks joined to the current trace (the Create, Confirm or Retry, or the probe's
    report); a task that has one keeps it."""
    traceparent = t.current_traceparent()
    if not traceparent or not tasks:
        return list(tasks)
    # The request that made them (a Create, say) is then findable by its job.
    trace.get_current_span().set_attribute(t.JOB_ID, tasks[0].job_id)
    return [task if task.traceparent else replace(task, traceparent=traceparent) for task in tasks]


@contextmanager
def claim_span(task: Task, worker_id: str, backend: str) -> Iterator[str]:
    """The claim, as a child of the trace the task was made in, linked to the ClaimTask
    call that took it. Yields the traceparent the worker continues: this span's, or the
    task's own when the server does not trace."""
    parent = t.context_from_traceparent(task.traceparent)
    caller = trace.get_current_span().get_span_context()
    links = [Link(caller)] if caller.is_valid and parent is not None else []
    attributes: dict[str, Any] = {
        t.TASK_ID: task.id,
        t.JOB_ID: task.job_id,
        t.TASK_KIND: task.kind,
        t.TASK_ATTEMPT: task.attempts,
        t.WORKER_ID: worker_id,
        t.DISPATCH_BACKEND: backend,
    }
    if task.output_id:
        attributes[t.OUTPUT_ID] = task.output_id
    with (
        _tracer.start_as_current_span(
            t.SPAN_DISPATCH_CLAIM,
            context=parent,
            links=links,
            attributes=attributes,
        ),
        job_log_context(task.job_id, task.id),
    ):
        yield t.current_traceparent() or t.valid_traceparent(task.traceparent)


@contextmanager
def publish_spans(entries: Sequence[OutboxEntry], topics: Sequence[str]) -> Iterator[list[str]]:
    """One producer span per outbox row, each in the trace its task was made in; yields
    the traceparent each message carries. The spans end when the publish returned."""
    spans = []
    traceparents = []
    for entry, topic in zip(entries, topics, strict=True):
        parent = t.context_from_traceparent(entry.traceparent) or otel_context.Context()
        span = _tracer.start_span(
            t.SPAN_DISPATCH_PUBLISH,
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                t.TASK_ID: entry.task_id,
                t.JOB_ID: entry.job_id,
                t.PRIORITY: entry.priority,
                t.TOPIC: topic,
                t.MESSAGING_SYSTEM: "gcp_pubsub",
            },
        )
        spans.append(span)
        with trace.use_span(span, end_on_exit=False):
            traceparents.append(t.current_traceparent() or t.valid_traceparent(entry.traceparent))
    try:
        yield traceparents
    except BaseException as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        for span in spans:
            span.end()
