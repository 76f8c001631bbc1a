"""The worker-facing use cases: claim, progress, results, lost leases.

A worker holds a task under a lease whose fencing token every report must carry; the
job's status moves only through the lifecycle's guarded transitions.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from ..domain import pricing
from ..domain.input_fit import input_problem
from ..domain.states import OUTPUT_TERMINAL, TERMINAL, JobStatus, OutputStatus, final_status
from ..store.store import JobRecord, Tx, now
from .lifecycle import Lifecycle

S = job_pb2.JobStage
# Output progress stays below 100 until the output is recorded COMPLETED, and
# job progress below 100 until the job is COMPLETED.
RUNNING_PROGRESS_CAP = 99.0


class TaskService:
    def __init__(self, life: Lifecycle, *, lease_seconds: float, max_task_attempts: int) -> None:
        self.life = life
        self.store = life.store
        self.lease_seconds = lease_seconds
        self.max_task_attempts = max_task_attempts

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
        published = None
        async with self.store.transaction() as tx:
            task = await tx.claim_task(worker_id, self.lease_seconds)
            if task is None:
                return None
            record = await tx.get_job(None, task.job_id, lock=True)
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
            if task.kind == "PROBE":
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
                message.output_prefix = f"{job.id}/{output.id}"
                if await tx.update_output(
                    output.id, only_from=[OutputStatus.PENDING], status=str(OutputStatus.PROCESSING)
                ):
                    await self.life.emit_output(tx, job, output.id)
                    published = job.id
        if published:
            self.life.published(published)
        return message

    async def report_progress(self, request: worker_service_pb2.ReportProgressRequest) -> bool:
        """Record progress; True when the worker must stop (the task was canceled)."""
        published = None
        async with self.store.transaction() as tx:
            task = await tx.leased_task(request.task_id, request.lease_token, lock=True)
            if task.status != "LEASED":
                return True
            await tx.extend_lease(task.id, self.lease_seconds)
            if task.kind != "TRANSCODE":
                return False
            record = await tx.get_job(None, task.job_id, lock=True)
            output = next(o for o in record.outputs if o.id == task.output_id)
            progress = min(max(request.progress, 0.0), RUNNING_PROGRESS_CAP)
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
        tasks_queued = False
        async with self.store.transaction() as tx:
            task = await tx.leased_task(request.task_id, request.lease_token, lock=True)
            if task.status != "LEASED":
                # Canceled meanwhile: the result is dropped, nothing else changes.
                return
            await tx.finish_task(task.id)
            record = await tx.get_job(None, task.job_id, lock=True)
            kind = request.WhichOneof("result")
            if task.kind == "PROBE":
                if kind == "input_info":
                    tasks_queued = await self._probed(tx, record, request.input_info)
                else:
                    await self.life.probe_failed(tx, record, request.error)
            elif kind == "transcode":
                await self._output_done(tx, record, task.output_id, request.transcode)
            else:
                await self._output_failed(tx, record, task.output_id, request.error)
        if tasks_queued:
            self.life.tasks_committed()
        self.life.published(task.job_id)

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
        await tx.update_output(
            output_id,
            only_from=[OutputStatus.PROCESSING, OutputStatus.PENDING],
            status=str(OutputStatus.COMPLETED),
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
        await tx.update_output(
            output_id,
            only_from=[OutputStatus.PROCESSING, OutputStatus.PENDING],
            status=str(OutputStatus.FAILED),
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

    async def reap_expired_leases(self) -> None:
        """Requeue tasks whose worker went silent; fail them after too many attempts."""
        async with self.store.transaction() as tx:
            expired = await tx.expired_leases()
            touched = []
            for task in expired:
                if task.attempts < self.max_task_attempts:
                    await tx.requeue(task.id)
                    continue
                await tx.finish_task(task.id, "DONE")
                record = await tx.get_job(None, task.job_id, lock=True)
                error = job_pb2.JobError(
                    code="WORKER_LOST",
                    message=f"no worker finished this task in {task.attempts} attempts",
                    retryable=True,
                )
                if task.kind == "PROBE":
                    if JobStatus(record.job.status) not in TERMINAL:
                        error.stage = S.JOB_STAGE_PROBING
                        await self.life.move(
                            tx, task.job_id, JobStatus.FAILED, error=error, completed_at=now()
                        )
                        await self.life.emit_completed(tx, task.job_id)
                else:
                    await self._output_failed(tx, record, task.output_id, error)
                touched.append(task.job_id)
        if expired:
            self.life.tasks_committed()
        for job_id in touched:
            self.life.published(job_id)


def _output_seconds(spec: job_pb2.OutputSpec, source_seconds: float) -> float:
    start = spec.clip.start_seconds if spec.HasField("clip") else 0.0
    remaining = max(source_seconds - start, 0.0)
    if spec.HasField("clip") and spec.clip.duration_seconds:
        return min(spec.clip.duration_seconds, remaining)
    return remaining
