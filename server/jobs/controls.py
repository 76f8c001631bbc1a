"""The owner's controls over a job: Confirm, Cancel, Retry and DeleteOutputs.

Each locks the job, checks the status it may act from, makes its change with the job's
events in that transaction (through the JobMachine and the Lifecycle), and answers with the
job as committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from ..domain.errors import FailedPrecondition
from ..domain.states import TERMINAL, JobStatus, OutputStatus
from ..origins.directory import output_origin_of
from ..store.store import now
from . import task_plan, variant_costs
from .lifecycle import Lifecycle
from .reads import JobMessages

S = job_pb2.JobStage

# Removes a job's stored files under an output origin: (origin, job id) -> files removed.
RemoveOutputFiles = Callable[[str, str], int]


class JobControls:
    def __init__(
        self,
        life: Lifecycle,
        messages: JobMessages,
        remove_output_files: RemoveOutputFiles | None = None,
    ) -> None:
        self.life = life
        self.store = life.store
        self.messages = messages
        self.remove_output_files = remove_output_files

    async def cancel(self, organization_id: str, job_id: str) -> job_pb2.Job:
        async with self.store.transaction() as tx:
            record = await tx.jobs.get_job(organization_id, job_id, lock=True)
            if JobStatus(record.job.status) in TERMINAL:
                raise FailedPrecondition(
                    f"job {job_id} is {record.job.status}; only a job that has not ended can "
                    "be canceled"
                )
            await tx.tasks.cancel_tasks(record.job.id)
            await self.life.jobs.finish(tx, record, JobStatus.CANCELED)
            record = await tx.jobs.get_job(organization_id, job_id)
        return await self.messages.message(record)

    async def confirm(self, organization_id: str, job_id: str) -> job_pb2.Job:
        """Start a delayed_start job after its owner reviewed the estimate."""
        async with self.store.transaction() as tx:
            record = await tx.jobs.get_job(organization_id, job_id, lock=True)
            if record.job.status != JobStatus.AWAITING_CONFIRMATION:
                raise FailedPrecondition(
                    f"job {job_id} is {record.job.status}; only a job awaiting confirmation "
                    "can be confirmed"
                )
            moment = now()
            await self.life.jobs.move(
                tx,
                record.job,
                JobStatus.PROCESSING,
                stage=S.JOB_STAGE_TRANSCODING,
                confirmed_at=moment,
                started_at=moment,
            )
            await self.life.queue_transcodes(tx, record)
            record = await tx.jobs.get_job(organization_id, job_id)
        return await self.messages.message(record)

    async def retry(self, organization_id: str, job_id: str) -> job_pb2.Job:
        """Run a FAILED, REJECTED, CANCELED or PARTIAL job again; COMPLETED outputs are kept."""
        async with self.store.transaction() as tx:
            record = await tx.jobs.get_job(organization_id, job_id, lock=True)
            job = record.job
            if job.status == JobStatus.COMPLETED or JobStatus(job.status) not in TERMINAL:
                raise FailedPrecondition(
                    f"job {job_id} is {job.status}; only a FAILED, REJECTED, CANCELED or "
                    "PARTIAL job can be retried"
                )
            for output in record.outputs:
                if output.status != OutputStatus.COMPLETED:
                    await tx.outputs.move_output(
                        output.id,
                        OutputStatus.PENDING,
                        progress=0.0,
                        error=None,
                        result=None,
                        qc=None,
                        actual_cost_micros=None,
                        variant_pricing=variant_costs.unbilled_entries(output.variant_pricing),
                    )
                    await self.life.emit_output(tx, job, output.id)
            await self.life.jobs.move(
                tx,
                job,
                JobStatus.PENDING,
                attempt=job.attempt + 1,
                progress=0.0,
                error=None,
                completed_at=None,
                started_at=None,
                actual_cost_micros=None,
            )
            await self.life.queue_tasks(tx, [task_plan.probe_task(job.id, job.priority)])
            record = await tx.jobs.get_job(organization_id, job_id)
        return await self.messages.message(record)

    async def delete_outputs(self, organization_id: str, job_id: str) -> tuple[job_pb2.Job, int]:
        """Remove a terminal job's stored files and content keys for good; the job record
        stays."""
        async with self.store.transaction() as tx:
            record = await tx.jobs.get_job(organization_id, job_id, lock=True)
            if JobStatus(record.job.status) not in TERMINAL:
                raise FailedPrecondition(
                    f"job {job_id} is {record.job.status}; cancel it or wait for it to end "
                    "before deleting its outputs"
                )
            deleted = 0
            if self.remove_output_files is not None:
                # Each place the job's outputs went (outputs may name their own origins).
                for place in sorted({output_origin_of(record.job, o) for o in record.outputs}):
                    if self.messages.origins is not None:
                        await self.messages.origins.ensure([place])
                    deleted += await asyncio.to_thread(self.remove_output_files, place, job_id)
            # The sealed content keys of encrypted outputs go too: without the segments they
            # decrypt nothing, and a secret kept for nothing is still a secret to leak. The
            # key endpoint then answers 404 for any token, as it does for any unknown key.
            await tx.content_keys.delete_keys_of([output.id for output in record.outputs])
            for output in record.outputs:
                if output.result:
                    result = worker_service_pb2.TranscodeResult.FromString(output.result)
                    del result.files[:]
                    result.notes.append("output files deleted")
                    await tx.outputs.update_output(output.id, result=result.SerializeToString())
                if output.live_copies_due_at is not None:
                    # Gone with the rest: nothing is left for the sweep (jobs.live_copies).
                    await tx.outputs.live_copies_removed(output.id)
            record = await tx.jobs.get_job(organization_id, job_id)
        return await self.messages.message(record), deleted
