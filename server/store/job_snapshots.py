"""A job with its outputs read for an answer (Get, a Watch's snapshot), without the ORM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, inspect, select
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.elements import NamedColumn

from ..domain.errors import NotFound
from .database import Database, aware
from .direct_reads import DirectQuery
from .models import Job, Output


@dataclass(slots=True)
class JobRow:
    """A job as read for an answer, without the ORM: every column of Job, by its attribute
    name, holding what the ORM would load (datetimes aware)."""

    id: str
    organization_id: str
    status: str
    stage: int
    progress: float
    priority: int
    delayed_start: bool
    input_url: str
    concat_input_urls: list
    job_metadata: dict
    webhook_url: str
    idempotency_key: str | None
    request_hash: str | None
    output_origin: str
    input_origin_id: str
    input_path: str
    output_origin_id: str
    output_path_prefix: str
    qc_policy: int
    input_info: bytes | None
    error: bytes | None
    estimated_cost_micros: int | None
    actual_cost_micros: int | None
    currency: str
    attempt: int
    last_sequence: int
    created_at: datetime
    updated_at: datetime
    probed_at: datetime | None
    confirmed_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None


@dataclass(slots=True)
class OutputRow:
    """An output as read for an answer, without the ORM: every column of Output."""

    id: str
    job_id: str
    position: int
    spec: bytes
    status: str
    progress: float
    error: bytes | None
    result: bytes | None
    estimated_cost_micros: int | None
    actual_cost_micros: int | None
    variant_pricing: list | None
    origin: str
    running_since: datetime | None
    content_key_ids: list | None
    qc: bytes | None
    live_copies_due_at: datetime | None


@dataclass(slots=True)
class JobSnapshot:
    """A job and its outputs as one statement read them (see read_job)."""

    job: JobRow
    outputs: list[OutputRow]


_JOB_FIELDS = [field.name for field in fields(JobRow)]
_OUTPUT_FIELDS = [field.name for field in fields(OutputRow)]


def output_row_of(output: Output) -> OutputRow:
    """An ORM output a transaction holds, as the one read type answers are built from."""
    return OutputRow(*(getattr(output, name) for name in _OUTPUT_FIELDS))


def snapshot_of(job: Job, outputs: Sequence[Output]) -> JobSnapshot:
    """ORM rows a transaction holds, as the one read type answers are built from (the same
    values read_job gives: datetimes aware)."""
    values = [getattr(job, name) for name in _JOB_FIELDS]
    row = JobRow(*values)
    for name in _JOB_FIELDS:
        value = getattr(row, name)
        if isinstance(value, datetime):
            setattr(row, name, aware(value))
    return JobSnapshot(row, [output_row_of(output) for output in outputs])


def _row_columns(model: type, row: type) -> list[NamedColumn[Any]]:
    """The model's columns in the order of the row class's fields, which must name them all."""
    mapper: Mapper[Any] = inspect(model)
    attributes = mapper.column_attrs
    named = [field.name for field in fields(row)]
    if set(named) != set(attributes.keys()):
        raise TypeError(f"{row.__name__} must have exactly the columns of {model.__name__}")
    return [attributes[name].columns[0] for name in named]


_JOB_COLUMNS = _row_columns(Job, JobRow)
_OUTPUT_COLUMNS = _row_columns(Output, OutputRow)
_JOB_WIDTH = len(_JOB_COLUMNS)
# SQLite hands its datetimes back naive (all stored as UTC).
_JOB_MOMENTS = [i for i, column in enumerate(_JOB_COLUMNS) if isinstance(column.type, DateTime)]

# One statement: the job and its outputs from one snapshot, even outside a transaction.
_READ_JOB = DirectQuery(
    select(*_JOB_COLUMNS, *_OUTPUT_COLUMNS)
    .select_from(Job.__table__.outerjoin(Output.__table__, Output.job_id == Job.id))
    .where(Job.id == bindparam("job_id"), Job.organization_id == bindparam("organization_id"))
    .order_by(Output.position)
)


async def read_job(database: Database, organization_id: str, job_id: str) -> JobSnapshot:
    """The job with its outputs, through a direct read (no session, no transaction: for
    answers, never for a decision a write depends on); NotFound also for another
    organization's job."""
    rows = await database.direct(_READ_JOB, job_id=job_id, organization_id=organization_id)
    if not rows:
        raise NotFound(f"job {job_id!r} not found")
    values = rows[0][:_JOB_WIDTH]
    for index in _JOB_MOMENTS:
        values[index] = aware(values[index])
    outputs = [OutputRow(*row[_JOB_WIDTH:]) for row in rows if row[_JOB_WIDTH] is not None]
    for output in outputs:
        output.running_since = aware(output.running_since)
        output.live_copies_due_at = aware(output.live_copies_due_at)
    return JobSnapshot(JobRow(*values), outputs)
