"""The worker's spans: one per task, continuing the trace the server handed over, and one
per step under it (stage-in, probe, each encode, packaging, upload).

The task's trace also travels back: every report the worker sends about a task carries
its `traceparent` metadata, so the server's spans for those calls (and the transcode tasks
a probe's result makes ready) stay in the job's trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from common import telemetry as t
from common.log_setup import job_log_context

SERVICE_NAME = "kiln-worker"
_tracer = t.tracer("kiln.worker")


def setup_tracing() -> bool:
    """Sets up the tracer provider (KILN_OTLP_ENDPOINT / KILN_TRACE_FILE); True if traced."""
    return t.configure_tracing(SERVICE_NAME) is not None


@contextmanager
def task_span(task: wpb.Task, worker_id: str, fallback_traceparent: str = "") -> Iterator[Span]:
    """The task's run, a child of the server's claim (`task.traceparent`), else of the
    Pub/Sub message's context, else the root of a new trace. Log lines inside name the
    job and task."""
    parent = (
        t.context_from_traceparent(task.traceparent)
        or t.context_from_traceparent(fallback_traceparent)
        # Never a child of whatever happens to be current: a task is its own unit of work.
        or otel_context.Context()
    )
    attributes: dict[str, Any] = {
        t.TASK_ID: task.id,
        t.JOB_ID: task.job_id,
        t.TASK_KIND: wpb.TaskKind.Name(task.kind).removeprefix("TASK_KIND_"),
        t.WORKER_ID: worker_id,
    }
    if task.output_id:
        attributes[t.OUTPUT_ID] = task.output_id
        attributes[t.OUTPUT_TYPE] = _type_name(task.output_spec)
    with (
        _tracer.start_as_current_span(
            t.SPAN_WORKER_TASK, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span,
        job_log_context(task.job_id, task.id),
    ):
        yield span


@contextmanager
def stage_in_span(url: str) -> Iterator[Span]:
    """Locating the input: checking it, and staging it to scratch when FFmpeg cannot read
    it in place (`located` then records which happened)."""
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    with _tracer.start_as_current_span(
        t.SPAN_STAGE_IN, attributes={t.INPUT_SCHEME: scheme}
    ) as span:
        yield span


def located(span: Span, url: str, location: str) -> None:
    """Whether the input was copied to scratch first (gs://, an http(s) origin without
    byte ranges) or read where it is."""
    in_place = location == url or url.lower().startswith("file:")
    span.set_attribute(t.INPUT_STAGED, not in_place)


@contextmanager
def probe_span() -> Iterator[Span]:
    with _tracer.start_as_current_span(t.SPAN_PROBE) as span:
        yield span


def probed(span: Span, info: job_pb2.InputInfo) -> None:
    span.set_attribute(t.INPUT_CONTAINER, info.container)
    span.set_attribute(t.INPUT_DURATION_SECONDS, round(info.duration_seconds, 3))


@contextmanager
def package_span(spec: job_pb2.OutputSpec) -> Iterator[Span]:
    """Rewriting playlists, writing sprite maps, describing every produced file."""
    with _tracer.start_as_current_span(
        t.SPAN_PACKAGE, attributes={t.OUTPUT_TYPE: _type_name(spec)}
    ) as span:
        yield span


@contextmanager
def upload_span(origin: str, files: list[job_pb2.OutputFile] | None = None) -> Iterator[Span]:
    """Storing the output's files (local storage or GCS)."""
    attributes: dict[str, Any] = {t.OUTPUT_ORIGIN: origin or "default"}
    if files is not None:
        attributes[t.UPLOAD_FILES] = len(files)
        attributes[t.UPLOAD_BYTES] = sum(f.size_bytes for f in files)
    with _tracer.start_as_current_span(t.SPAN_UPLOAD, attributes=attributes) as span:
        yield span


@contextmanager
def encode_span(spec: job_pb2.OutputSpec, media_seconds: float) -> Iterator[Span]:
    """One FFmpeg encode: codec and resolution asked for, and on success how many times
    faster than real time it ran (seconds of media produced per second of wall time)."""
    attributes: dict[str, Any] = {
        t.ENCODE_CODEC: encode_codecs(spec),
        t.ENCODE_RESOLUTION: encode_resolutions(spec),
        t.OUTPUT_TYPE: _type_name(spec),
        t.ENCODE_MEDIA_SECONDS: round(media_seconds, 3),
    }
    started = time.monotonic()
    with _tracer.start_as_current_span(t.SPAN_ENCODE, attributes=attributes) as span:
        yield span
        elapsed = time.monotonic() - started
        if elapsed > 0 and media_seconds > 0:
            span.set_attribute(t.ENCODE_REALTIME_FACTOR, round(media_seconds / elapsed, 3))


def encode_codecs(spec: job_pb2.OutputSpec) -> str:
    """The video codecs of the output's variants ("h264", "h264,vp9"), else its audio
    codec, else its type (images, custom commands)."""
    names = [job_pb2.VideoCodec.Name(v.codec).removeprefix("VIDEO_CODEC_") for v in spec.video]
    if not names and spec.HasField("audio") and spec.audio.codec:
        names = [job_pb2.AudioCodec.Name(spec.audio.codec).removeprefix("AUDIO_CODEC_")]
    unique = list(dict.fromkeys(name.lower() for name in names))
    return ",".join(unique) or _type_name(spec)


def encode_resolutions(spec: job_pb2.OutputSpec) -> str:
    """The variants' resolutions as asked ("720p,480p"); "source" where none was named."""
    return ",".join(v.resolution or "source" for v in spec.video) or "source"


def _type_name(spec: job_pb2.OutputSpec) -> str:
    return job_pb2.OutputType.Name(spec.type).removeprefix("OUTPUT_TYPE_").lower()


def rpc_metadata(metadata: tuple, task: wpb.Task) -> tuple:
    """`metadata` plus the task's trace context, for the calls that report on it."""
    traceparent = t.current_traceparent() or t.valid_traceparent(task.traceparent)
    return (*metadata, ("traceparent", traceparent)) if traceparent else metadata


def mark_failed(code: str) -> None:
    """Marks the current span (the task's) as failed with a kiln error code."""
    span = trace.get_current_span()
    span.set_attribute(t.ERROR_CODE, code)
    span.set_status(trace.Status(trace.StatusCode.ERROR, code))
