"""Logging: one line per event, with the job, task and trace it is about.

`configure_logging` installs one handler on the root logger. Every record gets `job_id`,
`task_id` (from the context variables `job_log_context` sets while a job or task is being
handled) and `trace_id`, `span_id` (from the current span, when tracing is on). With
KILN_LOG_FORMAT=json each record is one JSON object per line (tracebacks included, as a
field); otherwise a plain text line that ends with those ids when present.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from .telemetry import trace_ids

_job_id: ContextVar[str] = ContextVar("kiln_log_job_id", default="")
_task_id: ContextVar[str] = ContextVar("kiln_log_task_id", default="")

CONTEXT_FIELDS = ("job_id", "task_id", "trace_id", "span_id")
FORMAT_SETTING = "KILN_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def job_log_context(job_id: str = "", task_id: str = "") -> Iterator[None]:
    """Log lines inside carry these ids (an empty one leaves the outer value)."""
    tokens = []
    if job_id:
        tokens.append((_job_id, _job_id.set(job_id)))
    if task_id:
        tokens.append((_task_id, _task_id.set(task_id)))
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def bind_job(job_id: str) -> None:
    """Sets the job for the rest of the current asyncio task (one RPC's handler): for a
    task id that reveals its job only after a look-up."""
    _job_id.set(job_id)


class ContextFilter(logging.Filter):
    """Puts job_id, task_id, trace_id and span_id on every record ("" when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id, span_id = trace_ids()
        values = {
            "job_id": _job_id.get(),
            "task_id": _task_id.get(),
            "trace_id": trace_id,
            "span_id": span_id,
        }
        for name, value in values.items():
            # A value given explicitly (logger.info(..., extra={"job_id": ...})) wins.
            if not getattr(record, name, ""):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the ids present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if value := getattr(record, name, ""):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, followed by `job_id=… task_id=… trace_id=…` when present."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={value}"
            for name in ("job_id", "task_id", "trace_id")
            if (value := getattr(record, name, ""))
        )
        if not ids:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} {ids}{newline}{rest}"


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """The root logger's one handler (stderr): `fmt` "json" or "text"; None reads
    KILN_LOG_FORMAT (text when unset)."""
    if fmt is None:
        fmt = os.environ.get(FORMAT_SETTING, "text")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt.strip().lower() == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic narrates every plugin it loads at INFO; only its warnings matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # At DEBUG, botocore and urllib3 log request headers and signed URLs, which carry an
    # origin's access key id and signatures: keep them at INFO whatever the root level.
    for chatty in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))
