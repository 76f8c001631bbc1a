"""Tracing off by default, on only with a destination; bad trace context is ignored."""

from __future__ import annotations

import json

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import telemetry
from worker import tracing as worker_tracing

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
MALFORMED = [
    "",
    "garbage",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    VALID + "-" + "x" * 100,  # too long for a task
    "\x00\n",
]


@pytest.fixture
def memory_tracer(monkeypatch):
    """The worker's spans recorded in memory (the global provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(worker_tracing, "_tracer", provider.get_tracer("test"))
    return exporter


def test_nothing_is_set_up_or_exported_without_an_endpoint(monkeypatch):
    monkeypatch.setattr(telemetry, "_provider", None)
    installed = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    assert telemetry.configure_tracing("kiln-test", {}) is None
    assert telemetry.configure_tracing("kiln-test", {"KILN_OTLP_ENDPOINT": "  "}) is None
    assert installed == []
    assert not telemetry.tracing_enabled()


def test_outside_any_trace_there_is_no_context_to_hand_on():
    assert telemetry.current_traceparent() == ""
    assert telemetry.trace_ids() == ("", "")


def test_an_endpoint_exports_over_otlp_in_batches(monkeypatch):
    monkeypatch.setattr(telemetry, "_provider", None)
    installed: list[TracerProvider] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    provider = telemetry.configure_tracing(
        "kiln-test", {"KILN_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    )
    assert provider is not None
    assert installed == [provider]
    processors = provider._active_span_processor._span_processors
    assert [type(p) for p in processors] == [BatchSpanProcessor]
    assert isinstance(processors[0].span_exporter, OTLPSpanExporter)
    assert provider.resource.attributes["service.name"] == "kiln-test"
    # The first call in a process decides; a later one gets the same provider.
    assert telemetry.configure_tracing("other", {"KILN_TRACE_FILE": "/x"}) is provider
    provider.shutdown()


def test_the_trace_file_gets_every_finished_span_as_a_json_line(tmp_path):
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(telemetry.FileSpanExporter(path)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner") as inner:
        inner.set_attribute(telemetry.JOB_ID, "job_1")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    inner_record, outer_record = (json.loads(line) for line in lines)
    assert inner_record["name"] == "inner"
    assert inner_record["parent_span_id"] == outer_record["span_id"]
    assert inner_record["trace_id"] == outer_record["trace_id"]
    assert inner_record["attributes"] == {"kiln.job.id": "job_1"}


def test_a_valid_traceparent_is_the_parent():
    context = telemetry.context_from_traceparent(VALID)
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert format(parent.trace_id, "032x") == VALID.split("-")[1]
    assert telemetry.valid_traceparent(VALID) == VALID


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_traceparent_is_ignored(bad):
    assert telemetry.context_from_traceparent(bad) is None
    assert telemetry.valid_traceparent(bad) == ""


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_task_with_a_malformed_traceparent_starts_a_new_trace(memory_tracer, bad):
    task = wpb.Task(id="tsk_1", job_id="job_1", kind=wpb.TASK_KIND_PROBE, traceparent=bad)
    with worker_tracing.task_span(task, "w/0"):
        pass
    (span,) = memory_tracer.get_finished_spans()
    assert span.parent is None
    assert span.attributes[telemetry.JOB_ID] == "job_1"
    assert span.attributes[telemetry.TASK_KIND] == "PROBE"


def test_a_task_continues_the_trace_it_was_handed(memory_tracer):
    task = wpb.Task(id="tsk_1", job_id="job_1", kind=wpb.TASK_KIND_TRANSCODE, traceparent=VALID)
    with worker_tracing.task_span(task, "w/0"):
        metadata = worker_tracing.rpc_metadata((("authorization", "Bearer x"),), task)
    (span,) = memory_tracer.get_finished_spans()
    assert format(span.context.trace_id, "032x") == VALID.split("-")[1]
    assert span.parent is not None and format(span.parent.span_id, "016x") == VALID.split("-")[2]
    # Reports made inside carry the task span's context back to the server.
    sent = dict(metadata)["traceparent"]
    assert sent.split("-")[1] == VALID.split("-")[1]
    assert sent.split("-")[2] == format(span.context.span_id, "016x")


def test_an_untraced_worker_still_hands_the_task_trace_back():
    task = wpb.Task(id="tsk_1", traceparent=VALID)
    assert dict(worker_tracing.rpc_metadata((), task)) == {"traceparent": VALID}
    assert worker_tracing.rpc_metadata((), wpb.Task(traceparent="bad")) == ()


def test_an_encode_span_names_codec_resolution_and_realtime_factor(memory_tracer):
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="720p"),
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="480p"),
        ],
    )
    with worker_tracing.encode_span(spec, media_seconds=4.0):
        pass
    (span,) = memory_tracer.get_finished_spans()
    assert span.name == telemetry.SPAN_ENCODE
    assert span.attributes[telemetry.ENCODE_CODEC] == "h264"
    assert span.attributes[telemetry.ENCODE_RESOLUTION] == "720p,480p"
    assert span.attributes[telemetry.OUTPUT_TYPE] == "hls"
    assert span.attributes[telemetry.ENCODE_REALTIME_FACTOR] > 0


def test_audio_only_and_image_outputs_name_what_they_encode():
    audio = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_M4A, audio=job_pb2.AudioSpec(codec=job_pb2.AUDIO_CODEC_AAC)
    )
    assert worker_tracing.encode_codecs(audio) == "aac"
    image = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_JPG)
    assert worker_tracing.encode_codecs(image) == "jpg"
    assert worker_tracing.encode_resolutions(image) == "source"
