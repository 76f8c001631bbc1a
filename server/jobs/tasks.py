"""The worker-facing use cases: claim, progress, results, lost leases.

A worker holds a task under a lease whose fencing token every report must carry; the
job's status moves only through the lifecycle's guarded transitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from ..domain import pricing, worker_reports
from ..domain.errors import FieldViolation, InvalidArgument, StaleLease
from ..domain.input_fit import input_problem
from ..domain.states import (
    OUTPUT_TERMINAL,
    TERMINAL,
    JobStatus,
    OutputStatus,
    TaskKind,
    TaskStatus,
    final_status,
)
from ..store.models import Task
from ..store.store import JobRecord, Tx, now
from .lifecycle import Lifecycle

log = logging.getLogger(__name__)

# (output origin, key prefix) -> {relative path: size in bytes} of what storage holds.
StoredSizes = Callable[[str, str], dict[str, int]]

S = job_pb2.JobStage
# Output progress stays below 100 until the output is recorded COMPLETED, and
# job progress below 100 until the job is COMPLETED.
RUNNING_PROGRESS_CAP = 99.0


class TaskService:
    def __init__(
        self,
        life: Lifecycle,
        *,
        lease_seconds: float,
        max_task_attempts: int,
        stored_sizes: StoredSizes | None = None,
    ) -> None:
        self.life = life
        self.store = life.store
        self.lease_seconds = lease_seconds
        self.max_task_attempts = max_task_attempts
        # Reads what a finished output really left in storage; None only in unit wiring
        # that never completes a transcode.
        self.stored_sizes = stored_sizes

    async def claim(self, worker_id: str, wait_seconds: float) -> worker_service_pb2.Task | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            self.life.task_queued.clear()
            task = await self._claim_once(worker_id)
            if task is not None:
                return task
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # Woken at once by a task queued here (or NOTIFY on Postgres); the
            # timeout bounds the wait for tasks requeued by the lease reaper.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.life.task_queued.wait(), timeout=min(remaining, 1.0))

    async def _claim_once(self, worker_id: str) -> worker_service_pb2.Task | None:
        # 1: the lease alone, committed at once (the task row is the only lock taken).
        async with self.store.transaction() as tx:
            task = await tx.claim_task(worker_id, self.lease_seconds)
        if task is None:
            return None
        # 2: the job's side, in the one lock order (job, then task). A Cancel that got in
        # between has canceled the task too: nothing to hand out then.
        published = None
        async with self.store.transaction() as tx:
            record = await tx.get_job(None, task.job_id, lock=True)
            current = await tx.task(task.id)
            if current.status != TaskStatus.LEASED or current.lease_token != task.lease_token:
                return None
            job = record.job
            message = worker_service_pb2.Task(
                id=task.id,
                job_id=job.id,
                input_url=job.input_url,
                concat_input_urls=job.concat_input_urls,
                lease_token=task.lease_token,
                lease_seconds=self.lease_seconds,
                output_origin=job.output_origin,
            )
            if task.kind == TaskKind.PROBE:
                message.kind = worker_service_pb2.TASK_KIND_PROBE
                if job.status == JobStatus.PENDING:
                    await self.life.move(tx, job.id, JobStatus.PROBING, stage=S.JOB_STAGE_PROBING)
                    published = job.id
            else:
                message.kind = worker_service_pb2.TASK_KIND_TRANSCODE
                output = next(o for o in record.outputs if o.id == task.output_id)
                message.output_id = output.id
                message.output_spec.ParseFromString(output.spec)
                if job.input_info:
                    message.input_info.ParseFromString(job.input_info)
                message.output_prefix = output_prefix(job.id, output.id)
                if await tx.move_output(output.id, OutputStatus.PROCESSING):
                    await self.life.emit_output(tx, job, output.id)
                    published = job.id
        log.info(
            "task %s (%s) of job %s leased to worker %s (attempt %d)",
            task.id,
            task.kind,
            task.job_id,
            worker_id,
            task.attempts,
        )
        if published:
            self.life.published(published)
        return message

    async def _lock_leased(self, tx: Tx, task_id: str, token: int) -> tuple[Task, JobRecord]:
        """The one lock order: the job first, then the task (Cancel locks the job too)."""
        task = await tx.task(task_id)
        record = await tx.get_job(None, task.job_id, lock=True)
        try:
            task = await tx.leased_task(task_id, token, lock=True)
        except StaleLease:
            log.warning(
                "late report for task %s of job %s discarded: lease %s is not current "
                "(now held by worker %r)",
                task_id,
                task.job_id,
                token,
                task.worker_id,
            )
            raise
        return task, record

    async def report_progress(self, request: worker_service_pb2.ReportProgressRequest) -> bool:
        """Renew the lease and record progress; True when the worker must stop (canceled)."""
        if problem := worker_reports.progress_problem(request):
            log.warning("progress report for task %s refused: %s", request.task_id, problem)
            raise InvalidArgument([FieldViolation("progress", problem)])
        published = None
        async with self.store.transaction() as tx:
            task, record = await self._lock_leased(tx, request.task_id, request.lease_token)
            if task.status != TaskStatus.LEASED:
                return True
            await tx.extend_lease(task.id, task.lease_token, self.lease_seconds)
            if task.kind != TaskKind.TRANSCODE:
                return False
            output = next(o for o in record.outputs if o.id == task.output_id)
            progress = min(request.progress, RUNNING_PROGRESS_CAP)
            if progress <= output.progress + 0.05:
                return False
            await tx.update_output(output.id, progress=progress)
            output.progress = progress
            await self.life.emit_output_row(tx, record.job, output)
            job_progress = min(
                sum(o.progress for o in record.outputs) / len(record.outputs), RUNNING_PROGRESS_CAP
            )
            if job_progress > record.job.progress:
                stage = request.stage or S.JOB_STAGE_TRANSCODING
                await tx.update_job(record.job.id, progress=job_progress, stage=stage)
                await self.life.emit(
                    tx,
                    record.job.id,
                    progress=job_service_pb2.ProgressEvent(progress=job_progress, stage=stage),
                )
            published = record.job.id
        if published:
            self.life.published(published)
        return False

    async def complete_task(self, request: worker_service_pb2.CompleteTaskRequest) -> None:
        """Record a result, but only one that passes every check (worker_reports).

        A refused result ends this attempt: the task runs again while attempts remain (an
        honest worker may take it), else its output (or a probe's job) fails with
        WORKER_REPORT_REFUSED. The worker is answered INVALID_ARGUMENT either way.
        """
        problems = await self._result_problems(request)
        if problems:
            await self._refuse(request, problems)
            raise InvalidArgument([FieldViolation("result", "; ".join(problems))])
        tasks_queued = False
        async with self.store.transaction() as tx:
            task, record = await self._lock_leased(tx, request.task_id, request.lease_token)
            if task.status != TaskStatus.LEASED:
                log.info("result for task %s dropped: the task is %s", task.id, task.status)
                return
            await tx.end_lease(task.id, task.lease_token, TaskStatus.DONE)
            kind = request.WhichOneof("result")
            if task.kind == TaskKind.PROBE:
                if kind == "input_info":
                    tasks_queued = await self._probed(tx, record, request.input_info)
                else:
                    await self.life.probe_failed(tx, record, request.error)
            elif kind == "transcode":
                await self._output_done(tx, record, _output_id(task), request.transcode)
            else:
                await self._output_failed(tx, record, _output_id(task), request.error)
        if tasks_queued:
            self.life.tasks_committed()
        self.life.published(task.job_id)

    async def _result_problems(self, request: worker_service_pb2.CompleteTaskRequest) -> list[str]:
        """What is wrong with a result; storage is read outside any transaction."""
        async with self.store.transaction() as tx:
            task = await tx.leased_task(request.task_id, request.lease_token)
            record = await tx.get_job(None, task.job_id)
        kind = request.WhichOneof("result")
        if kind == "error":
            return worker_reports.error_problems(request.error)
        if task.kind == TaskKind.PROBE:
            if kind != "input_info":
                return ["a probe task must report input_info or an error"]
            return worker_reports.input_info_problems(request.input_info)
        if kind != "transcode":
            return ["a transcode task must report its files or an error"]
        output = next(o for o in record.outputs if o.id == task.output_id)
        spec = job_pb2.OutputSpec.FromString(output.spec)
        info = job_pb2.InputInfo.FromString(record.job.input_info or b"")
        expected = (
            None if record.job.concat_input_urls else _output_seconds(spec, info.duration_seconds)
        )
        problems = worker_reports.transcode_problems(
            request.transcode, spec, expected_seconds=expected
        )
        if problems or self.stored_sizes is None:
            return problems
        sizes = await asyncio.to_thread(
            self.stored_sizes,
            record.job.output_origin,
            output_prefix(record.job.id, output.id),
        )
        return worker_reports.stored_file_problems(request.transcode, sizes)

    async def _refuse(
        self, request: worker_service_pb2.CompleteTaskRequest, problems: list[str]
    ) -> None:
        tasks_changed = False
        async with self.store.transaction() as tx:
            task, record = await self._lock_leased(tx, request.task_id, request.lease_token)
            log.warning(
                "result of task %s (job %s, worker %r, attempt %d) refused: %s",
                task.id,
                task.job_id,
                task.worker_id,
                task.attempts,
                "; ".join(problems),
            )
            if task.status != TaskStatus.LEASED:
                return
            if task.attempts < self.max_task_attempts:
                tasks_changed = await tx.end_lease(task.id, task.lease_token, TaskStatus.QUEUED)
            else:
                await tx.end_lease(task.id, task.lease_token, TaskStatus.DONE)
                error = job_pb2.JobError(
                    code="WORKER_REPORT_REFUSED",
                    message=f"workers reported impossible results {task.attempts} times: "
                    + problems[0],
                    retryable=True,
                )
                await self._task_failed(tx, task, record, error)
        if tasks_changed:
            self.life.tasks_committed()
        self.life.published(task.job_id)

    async def _task_failed(
        self, tx: Tx, task: Task, record: JobRecord, error: job_pb2.JobError
    ) -> None:
        """A task given up on: its output fails, or for a probe the whole job."""
        if task.kind == TaskKind.PROBE:
            if JobStatus(record.job.status) not in TERMINAL:
                error.stage = S.JOB_STAGE_PROBING
                for output_id in await tx.cancel_open_outputs(task.job_id):
                    await self.life.emit_output(tx, record.job, output_id)
                await self.life.move(
                    tx, task.job_id, JobStatus.FAILED, error=error, completed_at=now()
                )
                await self.life.emit_completed(tx, task.job_id)
        else:
            await self._output_failed(tx, record, _output_id(task), error)

    async def _probed(self, tx: Tx, record: JobRecord, info: job_pb2.InputInfo) -> bool:
        job = record.job
        video = next((s for s in info.streams if s.kind == "video"), None)
        specs = [job_pb2.OutputSpec.FromString(output.spec) for output in record.outputs]
        if (problem := input_problem(info, specs)) is not None:
            await self.life.probe_failed(tx, record, problem)
            return False
        height = video.height if video else 0
        fps = video.frame_rate if video else 30.0
        total = 0
        for output in record.outputs:
            spec = job_pb2.OutputSpec.FromString(output.spec)
            seconds = _output_seconds(spec, info.duration_seconds)
            cost = pricing.output_cost(
                spec, seconds=seconds, source_height=height, source_fps=fps, priority=job.priority
            )
            await tx.update_output(output.id, estimated_cost_micros=cost)
            total += cost
        values = {
            "input_info": info.SerializeToString(),
            "probed_at": now(),
            "estimated_cost_micros": total,
        }
        if job.delayed_start:
            await self.life.move(tx, job.id, JobStatus.AWAITING_CONFIRMATION, **values)
            return False
        await self.life.move(
            tx,
            job.id,
            JobStatus.PROCESSING,
            stage=S.JOB_STAGE_TRANSCODING,
            started_at=now(),
            **values,
        )
        await self.life.queue_transcodes(tx, record)
        return True

    async def _output_done(
        self, tx: Tx, record: JobRecord, output_id: str, result: worker_service_pb2.TranscodeResult
    ) -> None:
        job = record.job
        output = next(o for o in record.outputs if o.id == output_id)
        spec = job_pb2.OutputSpec.FromString(output.spec)
        info = job_pb2.InputInfo.FromString(job.input_info or b"")
        video = next((s for s in info.streams if s.kind == "video"), None)
        cost = pricing.output_cost(
            spec,
            seconds=result.encoded_seconds,
            source_height=video.height if video else 0,
            source_fps=video.frame_rate if video else 30.0,
            priority=job.priority,
        )
        await tx.move_output(
            output_id,
            OutputStatus.COMPLETED,
            progress=100.0,
            result=result.SerializeToString(),
            actual_cost_micros=cost,
        )
        await self.life.emit_output(tx, job, output_id)
        await self._finish_if_done(tx, job.id)

    async def _output_failed(
        self, tx: Tx, record: JobRecord, output_id: str, error: job_pb2.JobError
    ) -> None:
        job = record.job
        error.stage = error.stage or S.JOB_STAGE_TRANSCODING
        await tx.move_output(
            output_id,
            OutputStatus.FAILED,
            error=error.SerializeToString(),
            actual_cost_micros=0,
        )
        await self.life.emit_output(tx, job, output_id)
        await self._finish_if_done(tx, job.id, error)

    async def _finish_if_done(
        self, tx: Tx, job_id: str, error: job_pb2.JobError | None = None
    ) -> None:
        record = await tx.get_job(None, job_id)
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
            failure = error or job_pb2.JobError(
                code="OUTPUTS_FAILED", message="every output failed"
            )
        await self.life.settle_actual_cost(tx, job_id)
        await self.life.move(tx, job_id, target, error=failure, **values)
        if target == JobStatus.COMPLETED:
            # 100 is reported only once the job is COMPLETED.
            await self.life.emit(tx, job_id, progress=job_service_pb2.ProgressEvent(progress=100.0))
        await self.life.emit_completed(tx, job_id)

    async def reap_expired_leases(self) -> int:
        """Requeue tasks whose worker went silent; fail them after too many attempts.

        Each candidate is handled in its own transaction, under the job's lock, by an UPDATE
        that still requires the same token and an expired lease: a lease renewed after the
        candidates were read is never taken. Returns how many leases were taken back.
        """
        async with self.store.transaction() as tx:
            candidates = await tx.expired_leases()
        taken = 0
        for candidate in candidates:
            try:
                taken += await self.reap(candidate)
            except Exception:
                log.exception("reaping task %s of job %s failed", candidate.id, candidate.job_id)
        return taken

    async def reap(self, candidate: Task) -> bool:
        """Take back one expired lease, if it is still expired under the same token."""
        requeue = candidate.attempts < self.max_task_attempts
        target = TaskStatus.QUEUED if requeue else TaskStatus.DONE
        async with self.store.transaction() as tx:
            record = await tx.get_job(None, candidate.job_id, lock=True)
            if not await tx.take_back_expired(candidate.id, candidate.lease_token, target):
                log.info("lease of task %s was renewed or ended meanwhile: kept", candidate.id)
                return False
            if requeue:
                log.warning(
                    "lease of task %s (job %s) expired: worker %r went silent; requeued "
                    "(attempt %d of %d)",
                    candidate.id,
                    candidate.job_id,
                    candidate.worker_id,
                    candidate.attempts,
                    self.max_task_attempts,
                )
            else:
                log.error(
                    "lease of task %s (job %s) expired on attempt %d (worker %r): attempts "
                    "exhausted, failing it",
                    candidate.id,
                    candidate.job_id,
                    candidate.attempts,
                    candidate.worker_id,
                )
                error = job_pb2.JobError(
                    code="WORKER_LOST",
                    message=f"no worker finished this task in {candidate.attempts} attempts",
                    retryable=True,
                )
                await self._task_failed(tx, candidate, record, error)
        self.life.tasks_committed()
        self.life.published(candidate.job_id)
        return True


def _output_id(task: Task) -> str:
    if task.output_id is None:
        raise ValueError(f"task {task.id} ({task.kind}) belongs to no output")
    return task.output_id


def output_prefix(job_id: str, output_id: str) -> str:
    """Where an output's files live in storage; a worker may write nowhere else."""
    return f"{job_id}/{output_id}"


def _output_seconds(spec: job_pb2.OutputSpec, source_seconds: float) -> float:
    start = spec.clip.start_seconds if spec.HasField("clip") else 0.0
    remaining = max(source_seconds - start, 0.0)
    if spec.HasField("clip") and spec.clip.duration_seconds:
        return min(spec.clip.duration_seconds, remaining)
    return remaining
