"""What a task's outcome does to its job: probed, output done or failed, job finished.

Each step takes the JobRecord its caller read under the job's lock and keeps it current
(the store mirrors every guarded UPDATE onto it), so a result reads the job once.
"""

from __future__ import annotations

from typing import Any

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from common.custom_command import covered_seconds

from ..domain import pricing
from ..domain.input_fit import input_problem
from ..domain.states import (
    OUTPUT_TERMINAL,
    TERMINAL,
    JobStatus,
    OutputStatus,
    TaskKind,
    final_status,
)
from ..store.models import Output, Task
from ..store.store import JobRecord, Tx, now
from . import variant_costs
from .lifecycle import Lifecycle

S = job_pb2.JobStage


async def probed(life: Lifecycle, tx: Tx, record: JobRecord, info: job_pb2.InputInfo) -> bool:
    """Record the input's facts and estimate; True when transcode tasks were queued."""
    job = record.job
    specs = [job_pb2.OutputSpec.FromString(output.spec) for output in record.outputs]
    if (problem := input_problem(info, specs)) is not None:
        await life.probe_failed(tx, record, problem)
        return False
    total = 0
    for output, spec in zip(record.outputs, specs, strict=True):
        seconds = output_seconds(spec, info.duration_seconds)
        cost, variants = _priced(life, spec, info, seconds, job.priority)
        estimate: dict[str, Any] = {"estimated_cost_micros": cost}
        if pricing.shows_variants(spec):
            # A completed output of a retried job keeps what its variants were billed.
            billed = output.variant_pricing if output.status == OutputStatus.COMPLETED else None
            estimate["variant_pricing"] = variant_costs.estimated_entries(variants, seconds, billed)
        await tx.update_output(output.id, **estimate)
        total += cost
    values = {
        "input_info": info.SerializeToString(),
        "probed_at": now(),
        "estimated_cost_micros": total,
    }
    if job.delayed_start:
        await life.move(tx, job, JobStatus.AWAITING_CONFIRMATION, **values)
        await life.notify_status(tx, record)
        return False
    await life.move(
        tx,
        job,
        JobStatus.PROCESSING,
        stage=S.JOB_STAGE_TRANSCODING,
        started_at=now(),
        **values,
    )
    await life.queue_transcodes(tx, record)
    return True


async def output_done(
    life: Lifecycle,
    tx: Tx,
    record: JobRecord,
    output_id: str,
    result: worker_service_pb2.TranscodeResult,
) -> None:
    job = record.job
    output = _output(record, output_id)
    spec = job_pb2.OutputSpec.FromString(output.spec)
    info = job_pb2.InputInfo.FromString(job.input_info or b"")
    cost, variants = _priced(life, spec, info, result.encoded_seconds, job.priority)
    actual: dict[str, Any] = {"actual_cost_micros": cost}
    if pricing.shows_variants(spec):
        actual["variant_pricing"] = variant_costs.billed_entries(
            output.variant_pricing, variants, result.encoded_seconds
        )
    await tx.move_output(
        output_id,
        OutputStatus.COMPLETED,
        progress=100.0,
        result=result.SerializeToString(),
        **actual,
    )
    await life.emit_output_row(tx, job, output)
    await life.notify_output(tx, job, output)
    await finish_if_done(life, tx, record)


async def output_failed(
    life: Lifecycle, tx: Tx, record: JobRecord, output_id: str, error: job_pb2.JobError
) -> None:
    error.stage = error.stage or S.JOB_STAGE_TRANSCODING
    output = _output(record, output_id)
    await tx.move_output(
        output_id,
        OutputStatus.FAILED,
        error=error.SerializeToString(),
        actual_cost_micros=0,
        variant_pricing=variant_costs.failed_entries(output.variant_pricing),
    )
    await life.emit_output_row(tx, record.job, output)
    await life.notify_output(tx, record.job, output)
    await finish_if_done(life, tx, record, error)


async def task_failed(
    life: Lifecycle, tx: Tx, task: Task, record: JobRecord, error: job_pb2.JobError
) -> None:
    """A task given up on: its output fails, or for a probe the whole job."""
    if task.kind == TaskKind.PROBE:
        if JobStatus(record.job.status) not in TERMINAL:
            error.stage = S.JOB_STAGE_PROBING
            await life.cancel_open_outputs(tx, record)
            await life.move(tx, record.job, JobStatus.FAILED, error=error, completed_at=now())
            await life.emit_completed(tx, record)
    else:
        await output_failed(life, tx, record, task_output_id(task), error)


async def finish_if_done(
    life: Lifecycle, tx: Tx, record: JobRecord, error: job_pb2.JobError | None = None
) -> None:
    """End a PROCESSING job once none of its outputs runs any more."""
    job = record.job
    statuses = [OutputStatus(o.status) for o in record.outputs]
    if job.status != JobStatus.PROCESSING or any(s not in OUTPUT_TERMINAL for s in statuses):
        return
    target = final_status(statuses)
    values: dict[str, Any] = {"completed_at": now()}
    failure = None
    if target == JobStatus.COMPLETED:
        values["progress"] = 100.0
    if target == JobStatus.FAILED:
        failure = error or job_pb2.JobError(code="OUTPUTS_FAILED", message="every output failed")
    await life.settle_actual_cost(tx, record)
    await life.move(tx, job, target, error=failure, **values)
    if target == JobStatus.COMPLETED:
        # 100 is reported only once the job is COMPLETED.
        await life.emit(tx, job.id, progress=job_service_pb2.ProgressEvent(progress=100.0))
    await life.emit_completed(tx, record)


def _priced(
    life: Lifecycle,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    seconds: float,
    priority: int,
) -> tuple[int, list[pricing.VariantPrice]]:
    """The output's micros for `seconds` and, for video outputs, each variant's share."""
    video = next((s for s in info.streams if s.kind == "video"), None)
    height = pricing.source_display_height(video)
    fps = video.frame_rate if video else 30.0
    cost = pricing.output_cost(
        spec,
        seconds=seconds,
        source_height=height,
        source_fps=fps,
        priority=priority,
        table=life.pricing,
    )
    variants = pricing.variant_prices(
        spec,
        seconds=seconds,
        source_height=height,
        source_fps=fps,
        priority=priority,
        table=life.pricing,
    )
    return cost, variants


def task_output_id(task: Task) -> str:
    if task.output_id is None:
        raise ValueError(f"task {task.id} ({task.kind}) belongs to no output")
    return task.output_id


def output_seconds(spec: job_pb2.OutputSpec, source_seconds: float) -> float:
    """How much of the source an output covers (its clip, if any)."""
    if spec.HasField("custom"):
        return covered_seconds(list(spec.custom.args), source_seconds)
    start = spec.clip.start_seconds if spec.HasField("clip") else 0.0
    remaining = max(source_seconds - start, 0.0)
    if spec.HasField("clip") and spec.clip.duration_seconds:
        return min(spec.clip.duration_seconds, remaining)
    return remaining


def _output(record: JobRecord, output_id: str) -> Output:
    return next(o for o in record.outputs if o.id == output_id)
