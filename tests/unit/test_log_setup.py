"""Log lines name their job, task and trace; KILN_LOG_FORMAT=json makes them JSON."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from common.log_setup import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    job_log_context,
)


@pytest.fixture
def capture():
    """A logger whose lines land in a buffer, through the filter and a given formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("kiln.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def use(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
        handler.setFormatter(formatter)
        return logger, stream

    yield use
    logger.removeHandler(handler)


def test_a_json_line_carries_job_task_and_trace(capture):
    logger, stream = capture(JsonFormatter())
    tracer = TracerProvider().get_tracer("test")
    with (
        tracer.start_as_current_span("work") as span,
        job_log_context("job_01", "tsk_01"),
    ):
        logger.info("encoding %s", "out_1")
    entry = json.loads(stream.getvalue())
    context = span.get_span_context()
    assert entry["message"] == "encoding out_1"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "kiln.test.logs"
    assert entry["time"].endswith("+00:00")
    assert entry["job_id"] == "job_01"
    assert entry["task_id"] == "tsk_01"
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")


def test_fields_not_known_are_left_out_and_the_context_ends_with_its_block(capture):
    logger, stream = capture(JsonFormatter())
    with job_log_context("job_01"):
        logger.warning("inside")
    logger.warning("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["job_id"] == "job_01"
    assert "task_id" not in inside and "trace_id" not in inside
    assert set(outside) == {"time", "level", "logger", "message"}


def test_a_traceback_stays_on_the_one_json_line(capture):
    logger, stream = capture(JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("task failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert "ValueError: boom" in entry["exception"]


def test_text_lines_end_with_the_ids(capture):
    logger, stream = capture(TextFormatter())
    with job_log_context("job_01", "tsk_01"):
        logger.info("leased")
    line = stream.getvalue().strip()
    assert line.endswith("kiln.test.logs: leased job_id=job_01 task_id=tsk_01")


def test_configure_logging_reads_the_format_from_the_environment(monkeypatch):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        monkeypatch.setenv("KILN_LOG_FORMAT", "json")
        configure_logging("warning")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert root.level == logging.WARNING
        configure_logging("info", "text")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, TextFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
