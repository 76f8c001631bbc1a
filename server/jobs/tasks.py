"""The worker-facing use cases: claim, progress, results, lost leases.

A worker holds a task under a lease whose fencing token every report must carry; the
job's status moves only through the lifecycle's guarded transitions.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from common.log_setup import bind_job
from common.storage.origins import Origins

from ..domain import worker_reports
from ..domain.errors import FieldViolation, InvalidArgument, StaleLease
from ..domain.states import JobStatus, OutputStatus, TaskKind, TaskStatus
from ..origins.directory import output_origin_of
from ..store.models import Job, Output, Task
from ..store.store import JobRecord, Tx, now
from ..tracing import claim_span
from . import outcomes, views
from .chunk_reuse import KeptPieces, PieceKeeper
from .content_keys import OutputKeys
from .fleet import Fleet
from .lifecycle import Lifecycle
from .live_audio import LiveAudio
from .lost_tasks import LostTasks
from .progress_gate import ProgressGate
from .queue_eta import QueueEta
from .result_checks import FILE_RESULTS, ResultChecks, StoredSizes, plain_problems
from .transfers import OriginTransfers, output_prefix

log = logging.getLogger(__name__)

S = job_pb2.JobStage
# Output progress stays below 100 until the output is recorded COMPLETED, and
# job progress below 100 until the job is COMPLETED.
RUNNING_PROGRESS_CAP = 99.0
WORKER_KINDS = {
    TaskKind.TRANSCODE: worker_service_pb2.TASK_KIND_TRANSCODE,
    TaskKind.CHUNK: worker_service_pb2.TASK_KIND_CHUNK,
    TaskKind.AUDIO: worker_service_pb2.TASK_KIND_AUDIO,
    TaskKind.MERGE: worker_service_pb2.TASK_KIND_MERGE,
}


class TaskService:
    def __init__(
        self,
        life: Lifecycle,
        *,
        lease_seconds: float,
        max_task_attempts: int,
        stored_sizes: StoredSizes | None = None,
        progress_events_per_second: float = 2.0,
        files: Origins | None = None,
        content_keys: OutputKeys | None = None,
    ) -> None:
        self.life = life
        # Encrypted outputs' keys (None in wiring that makes none: such a task fails).
        self.content_keys = content_keys
        self.outcomes = outcomes.TaskOutcomes(life)
        self.store = life.store
        self.lease_seconds = lease_seconds
        self.max_task_attempts = max_task_attempts
        self.progress_gate = ProgressGate(progress_events_per_second)

        # Where the server itself writes files: the live playlists of chunked HLS outputs.
        self.files = files
        self.transfers = OriginTransfers(self.store, files)
        self.checks = ResultChecks(self.store, stored_sizes, files)
        self.keeper = PieceKeeper(self.store, stored_sizes, files)
        self.lost = LostTasks(life, self.outcomes, max_task_attempts)
        self.live_audio = LiveAudio(
            self.store, self.checks, self.outcomes, self._lock_leased, self._publish
        )
        self.fleet = Fleet(self.store)
        self.queue_eta = QueueEta(self.store, lease_seconds)

    async def claim(
        self, worker_id: str, wait_seconds: float, task_id: str = ""
    ) -> worker_service_pb2.Task | None:
        """The most urgent queued task, waiting up to `wait_seconds` for one; with `task_id`
        (a Pub/Sub delivery) that task only, at once, or None if it is not queued."""
        if task_id:
            return await self._claim_once(worker_id, task_id)
        dispatch = self.life.dispatch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            dispatch.arm()
            task = await self._claim_once(worker_id)
            if task is not None:
                return task
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # Woken by any task made ready (queued, requeued, released) here or, on
            # Postgres, by any replica: no polling.
            await dispatch.wait_for_ready(remaining)

    async def _claim_once(
        self, worker_id: str, task_id: str = ""
    ) -> worker_service_pb2.Task | None:
        # 1: the lease alone, committed at once (the task row is the only lock taken).
        async with self.store.transaction() as tx:
            claim = await tx.tasks.claim_ready_task(worker_id, self.lease_seconds, task_id)
        if claim is None:
            return None
        task = claim.task
        self.life.metrics.task_leased(task.kind, claim.ready_since)
        # The rest runs in the claim's span: in the trace the task was made in.
        with claim_span(task, worker_id, self.life.dispatch.name) as traceparent:
            # 2: the job's side, in the one lock order (job, then task). A Cancel that got in
            # between has canceled the task too: nothing to hand out then.
            async with self.store.transaction() as tx:
                record = await tx.jobs.get_job(None, task.job_id, lock=True)
                current = await tx.tasks.task(task.id)
                if current.status != TaskStatus.LEASED or current.lease_token != task.lease_token:
                    return None
                job = record.job
                input_origin = (job.input_origin_id, job.input_path)
                message = worker_service_pb2.Task(
                    id=task.id,
                    job_id=job.id,
                    input_url=job.input_url,
                    concat_input_urls=job.concat_input_urls,
                    lease_token=task.lease_token,
                    lease_seconds=self.lease_seconds,
                    output_origin=job.output_origin,
                    traceparent=traceparent,
                )
                if task.kind == TaskKind.PROBE:
                    message.kind = worker_service_pb2.TASK_KIND_PROBE
                    if job.status == JobStatus.PENDING:
                        await self.life.jobs.move(
                            tx, job, JobStatus.PROBING, stage=S.JOB_STAGE_PROBING
                        )
                else:
                    message.kind = WORKER_KINDS[TaskKind(task.kind)]
                    output = next(o for o in record.outputs if o.id == task.output_id)
                    if task.chunk:
                        message.chunk.ParseFromString(task.chunk)
                    if task.kind == TaskKind.MERGE:
                        message.merge.CopyFrom(
                            outcomes.merge_plan(
                                await outcomes.current_output_tasks(tx, record, output.id)
                            )
                        )
                    message.output_id = output.id
                    message.output_spec.ParseFromString(output.spec)
                    if job.input_info:
                        message.input_info.ParseFromString(job.input_info)
                    message.output_prefix = output_prefix(job.id, output.id)
                    if task.kind == TaskKind.TRANSCODE and message.output_spec.HasField(
                        "encryption"
                    ):
                        message.encryption.CopyFrom(
                            await self._encryption(tx, job, output, message)
                        )
                    message.output_origin = output_origin_of(job, output)
                    # The output's first task of the attempt: its ETA's rate counts from here.
                    if await tx.outputs.move_output(
                        output.id, OutputStatus.PROCESSING, running_since=now()
                    ):
                        await self.life.emit_output_row(tx, job, output)
            log.info(
                "task %s (%s) of job %s leased to worker %s (attempt %d)",
                task.id,
                task.kind,
                task.job_id,
                worker_id,
                task.attempts,
            )
        await self.transfers.hand_out(message, *input_origin)
        return message

    async def _encryption(
        self, tx: Tx, job: Job, output: Output, message: worker_service_pb2.Task
    ) -> worker_service_pb2.TaskEncryption:
        if self.content_keys is None:
            raise RuntimeError("this server has no content keys: an encrypted output cannot run")
        return await self.content_keys.task_encryption(
            tx, job, output, message.output_spec, message.input_info
        )

    async def grant_transfers(
        self, request: worker_service_pb2.GrantTransfersRequest
    ) -> worker_service_pb2.GrantTransfersResponse:
        return await self.transfers.grant(request)

    async def _lock_leased(self, tx: Tx, task_id: str, token: int) -> tuple[Task, JobRecord]:
        """The one lock order: the job first, then the task (Cancel locks the job too)."""
        task = await tx.tasks.task(task_id)
        bind_job(task.job_id)
        record = await tx.jobs.get_job(None, task.job_id, lock=True)
        try:
            task = await tx.tasks.leased_task(task_id, token, lock=True)
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
        if request.HasField("audio_so_far"):
            await self.live_audio.reported(request)
        if not self.progress_gate.due(request.task_id, request.stage):
            return await self._heartbeat(request)
        async with self.store.transaction() as tx:
            task, record = await self._lock_leased(tx, request.task_id, request.lease_token)
            if task.status != TaskStatus.LEASED:
                return True
            await tx.tasks.extend_lease(task.id, task.lease_token, self.lease_seconds)
            if task.kind not in (TaskKind.TRANSCODE, TaskKind.CHUNK):
                return False
            output = next(o for o in record.outputs if o.id == task.output_id)
            progress = min(request.progress, RUNNING_PROGRESS_CAP)
            if task.kind == TaskKind.CHUNK:
                await tx.tasks.set_task_progress(task.id, task.lease_token, request.progress)
                task.progress = request.progress
                chunks = [
                    t
                    for t in await outcomes.current_output_tasks(tx, record, output.id)
                    if t.kind == TaskKind.CHUNK
                ]
                progress = min(_encoded_fraction(chunks), RUNNING_PROGRESS_CAP)
            if progress <= output.progress + 0.05:
                return False
            self.progress_gate.logged(request.task_id, record.job.id, request.stage)
            await tx.outputs.update_output(output.id, progress=progress)
            output.progress = progress
            await self.life.emit_output_row(tx, record.job, output)
            job_progress = min(
                sum(o.progress for o in record.outputs) / len(record.outputs), RUNNING_PROGRESS_CAP
            )
            if job_progress > record.job.progress:
                before = record.job.progress
                stage = request.stage or S.JOB_STAGE_TRANSCODING
                if task.kind in (TaskKind.CHUNK, TaskKind.AUDIO):
                    # A piece's own packaging (measuring its segments) is part of the job's
                    # TRANSCODING: the job packages only in its MERGE task.
                    stage = S.JOB_STAGE_TRANSCODING
                await tx.jobs.update_job(record.job.id, progress=job_progress, stage=stage)
                await self.life.notify_progress(tx, record, before)
                event = job_service_pb2.ProgressEvent(progress=job_progress, stage=stage)
                moment, snapshot = now(), record.snapshot()
                # An output still queued (or just started) is told from the queue ahead.
                queued = None
                if views.needs_queue(snapshot, moment):
                    queued = await self.queue_eta.estimates(moment, tx)
                if (left := views.job_eta(snapshot, moment, queued)) is not None:
                    event.eta_seconds = left
                await self.life.emit(tx, record.job.id, progress=event)
        return False

    async def _heartbeat(self, request: worker_service_pb2.ReportProgressRequest) -> bool:
        """A report between two logged ones renews the lease only: one guarded UPDATE of the
        task, no job lock, no event. True when the task ended under the worker (canceled)."""
        async with self.store.transaction() as tx:
            if await tx.tasks.extend_lease(
                request.task_id, request.lease_token, self.lease_seconds
            ):
                return False
            task = await tx.tasks.task(request.task_id)
            if task.lease_token != request.lease_token:
                log.warning(
                    "late heartbeat for task %s of job %s discarded: lease %s is not current "
                    "(now held by worker %r)",
                    task.id,
                    task.job_id,
                    request.lease_token,
                    task.worker_id,
                )
                raise StaleLease(f"task {task.id}: lease {request.lease_token} is not current")
            return True

    async def complete_task(self, request: worker_service_pb2.CompleteTaskRequest) -> None:
        """Record a result, but only one that passes every check (worker_reports).

        A refused result ends this attempt: the task runs again while attempts remain (an
        honest worker may take it), else its output (or a probe's job) fails with
        WORKER_REPORT_REFUSED. The worker is answered INVALID_ARGUMENT either way.

        Files (a transcode or chunk result) are checked against the spec and storage before
        the transaction, since storage is never read with the job locked; anything else (a
        probe's facts, an error) needs only the task, so it is checked under the lock, with
        no read transaction of its own.
        """
        files_reported = request.WhichOneof("result") in FILE_RESULTS
        if files_reported and (problems := await self.checks.problems(request)):
            await self._refuse(request, problems)
            raise InvalidArgument([FieldViolation("result", "; ".join(problems))])
        kept: KeptPieces = {}
        if request.WhichOneof("result") == "input_info":
            # A retried job's finished pieces, their files checked in storage now.
            kept = await self.keeper.kept_pieces(request.task_id)
        problems = []
        async with self.store.transaction() as tx:
            task, record = await self._lock_leased(tx, request.task_id, request.lease_token)
            if not files_reported:
                problems = plain_problems(task, request) or []
            if not problems:
                await self._record(tx, task, record, request, kept)
        if problems:
            await self._refuse(request, problems)
            raise InvalidArgument([FieldViolation("result", "; ".join(problems))])

    async def _record(
        self,
        tx: Tx,
        task: Task,
        record: JobRecord,
        request: worker_service_pb2.CompleteTaskRequest,
        kept: KeptPieces,
    ) -> None:
        """Apply an accepted result to the task and its job, under the job's lock."""
        if task.status != TaskStatus.LEASED:
            log.info("result for task %s dropped: the task is %s", task.id, task.status)
            return
        await tx.tasks.end_lease(task.id, task.lease_token, TaskStatus.DONE)
        kind = request.WhichOneof("result")
        if task.kind == TaskKind.PROBE:
            if kind == "input_info":
                await self.outcomes.probed(tx, record, request.input_info, kept)
            else:
                await self.life.jobs.probe_failed(tx, record, request.error)
        elif kind == "chunk":
            live = await self.outcomes.piece_done(tx, record, task, request.chunk)
            if live is not None:
                # Written under the job's lock: two chunks finishing at once publish in
                # order, never an older list over a newer one.
                output = next(o for o in record.outputs if o.id == task.output_id)
                await self._publish(output_origin_of(record.job, output), task, live[0])
        elif kind == "transcode":
            await self.outcomes.output_done(
                tx, record, outcomes.task_output_id(task), request.transcode
            )
        else:
            await self.outcomes.output_failed(
                tx, record, outcomes.task_output_id(task), request.error
            )

    async def _publish(self, origin: str, task: Task, texts: dict[str, str]) -> None:
        """Write the live playlists of a chunked HLS output into its storage."""
        if self.files is None or not texts:
            return
        await self.files.ensure([origin])
        backend = self.files.backend(origin)
        prefix = output_prefix(task.job_id, outcomes.task_output_id(task))

        def write() -> None:
            with tempfile.TemporaryDirectory(prefix="kiln-live-") as folder:
                for path, text in texts.items():
                    target = Path(folder) / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text, "utf-8")
                backend.add_files(Path(folder), prefix)

        try:
            await asyncio.to_thread(write)
        except Exception:
            # Play-while-encoding is a convenience: the merge writes the final playlists.
            log.exception("publishing the live playlists of task %s failed", task.id)

    async def _refuse(
        self, request: worker_service_pb2.CompleteTaskRequest, problems: list[str]
    ) -> None:
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
                if await tx.tasks.end_lease(task.id, task.lease_token, TaskStatus.QUEUED):
                    await self.life.dispatch.tasks_ready(tx, [task])
            else:
                await tx.tasks.end_lease(task.id, task.lease_token, TaskStatus.DONE)
                error = job_pb2.JobError(
                    code="WORKER_REPORT_REFUSED",
                    message=f"workers reported impossible results {task.attempts} times: "
                    + problems[0],
                    retryable=True,
                )
                await self.outcomes.task_failed(tx, task, record, error)

    async def release(self, request: worker_service_pb2.ReleaseTaskRequest) -> None:
        """A worker gives a task back unfinished (it is draining): queued again at once,
        the attempt not counted, so the job does not wait for the lease to expire."""
        async with self.store.transaction() as tx:
            task, _record = await self._lock_leased(tx, request.task_id, request.lease_token)
            if task.status != TaskStatus.LEASED:
                return
            if await tx.tasks.give_back_lease(task.id, request.lease_token):
                await self.life.dispatch.tasks_ready(tx, [task])
        log.info(
            "task %s of job %s given back by worker %r (%s): queued again",
            task.id,
            task.job_id,
            task.worker_id,
            request.reason or "no reason given",
        )


def _encoded_fraction(chunks: list[Task]) -> float:
    """Percent of an output's chunks encoded, each weighted by its length."""
    total = done = 0.0
    for chunk in chunks:
        window = worker_service_pb2.ChunkRange.FromString(chunk.chunk or b"")
        length = max(window.end_seconds - window.start_seconds, 0.0)
        total += length
        finished = chunk.status == TaskStatus.DONE
        done += length * (100.0 if finished else min(chunk.progress or 0.0, 100.0)) / 100.0
    return 100.0 * done / total if total else 0.0
