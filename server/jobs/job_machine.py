"""A job's status: the one place it moves, and the one way a job ends.

Every status change of a job goes through `move` (a guarded UPDATE and its status_change
event, in the caller's transaction), and every ending through `finish`: cancel, a probe that
failed, a task given up on (lost leases, a dead-lettered message) and the last output ending
all end a job the same way — open outputs canceled with their events, the actual cost settled
from what the outputs cost, the terminal status with its event and metrics, 100 % progress for
a completed job, and the `completed` event with its webhook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.v1 import job_pb2, job_service_pb2

from ..domain.states import OUTPUT_TERMINAL, TERMINAL, JobStatus, OutputStatus, final_status
from ..store.models import Job
from ..store.store import JobRecord, Tx, now
from . import live_copies

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

S = job_pb2.JobStage
# Error codes of a probe's result that blame the input (the job is REJECTED); any other
# failure before transcoding is the service's (FAILED).
INPUT_ERROR_PREFIX = "INPUT_"


class JobMachine:
    def __init__(self, life: Lifecycle) -> None:
        self.life = life

    async def move(
        self,
        tx: Tx,
        job: Job,
        target: JobStatus,
        *,
        stage: job_pb2.JobStage = S.JOB_STAGE_UNSPECIFIED,
        error: job_pb2.JobError | None = None,
        **values: Any,
    ) -> None:
        """One guarded transition and its status_change event, in the caller's transaction.

        `job` is the row read under its lock in this transaction: its status is the source
        the event names; the store's UPDATE allows only the table's sources for `target`.
        """
        if error is not None:
            values["error"] = error.SerializeToString()
        source = await tx.jobs.transition_held_job(job, target, stage=stage, **values)
        change = job_service_pb2.StatusChangeEvent(
            from_status=job_pb2.JobStatus.Value("JOB_STATUS_" + source),
            to_status=job_pb2.JobStatus.Value("JOB_STATUS_" + target),
            stage=stage,
        )
        if error is not None:
            change.error.CopyFrom(error)
        await self.life.emit(tx, job.id, status_change=change)
        if target in TERMINAL:
            # Counted once the transition is committed: a rolled-back one never happened.
            tx.after_commit(lambda: self.life.metrics.job_finished(target))

    async def finish(
        self,
        tx: Tx,
        record: JobRecord,
        target: JobStatus,
        error: job_pb2.JobError | None = None,
    ) -> None:
        """End the job as `target` (see the module docstring). `record` is read under the
        job's lock in this transaction and kept current here."""
        if target not in TERMINAL:
            raise ValueError(f"{target} does not end a job")
        await self._cancel_open_outputs(tx, record)
        await tx.jobs.update_job(
            record.job.id,
            actual_cost_micros=sum(o.actual_cost_micros or 0 for o in record.outputs),
        )
        values: dict[str, Any] = {"completed_at": now()}
        if target == JobStatus.COMPLETED:
            values["progress"] = 100.0
        # A COMPLETED output is never run again (a Retry runs the others): its chunked
        # MPEG-TS ladder's live copies are needed only by players that started mid-job, for
        # a while, whatever the rest of the job did.
        await live_copies.schedule_removal(
            tx, record, values["completed_at"], self.life.live_copies_grace
        )
        await self.move(tx, record.job, target, error=error, **values)
        if target == JobStatus.COMPLETED:
            # 100 is reported only once the job is COMPLETED.
            await self.life.emit(
                tx, record.job.id, progress=job_service_pb2.ProgressEvent(progress=100.0)
            )
        await self.life.emit_completed(tx, record)

    async def probe_failed(self, tx: Tx, record: JobRecord, error: job_pb2.JobError) -> None:
        """The job could not be probed: REJECTED when the input is at fault (an INPUT_*
        code), FAILED for anything else (a worker lost, a message dead-lettered)."""
        error.stage = error.stage or S.JOB_STAGE_PROBING
        blames_input = error.code.startswith(INPUT_ERROR_PREFIX)
        await self.finish(
            tx, record, JobStatus.REJECTED if blames_input else JobStatus.FAILED, error
        )

    async def finish_if_done(
        self, tx: Tx, record: JobRecord, error: job_pb2.JobError | None = None
    ) -> None:
        """End a PROCESSING job once none of its outputs runs any more."""
        statuses = [OutputStatus(o.status) for o in record.outputs]
        if record.job.status != JobStatus.PROCESSING or any(
            s not in OUTPUT_TERMINAL for s in statuses
        ):
            return
        target = final_status(statuses)
        failure = None
        if target == JobStatus.FAILED:
            failure = error or job_pb2.JobError(
                code="OUTPUTS_FAILED", message="every output failed"
            )
        await self.finish(tx, record, target, failure)

    async def _cancel_open_outputs(self, tx: Tx, record: JobRecord) -> None:
        """Cancel every output still open, with an event each, from the held record."""
        canceled = set(await tx.outputs.cancel_open_outputs(record.job.id))
        for output in record.outputs:
            if output.id in canceled:
                await self.life.emit_output_row(tx, record.job, output)
