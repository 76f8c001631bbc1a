"""Job use cases: what the RPC adapters call. Thin adapters, logic here, SQL in the store.

Every change of a job happens in one store transaction that also appends its
Watch events, so the event log and the job never disagree. After the commit the
hub (this process) or NOTIFY (every process, on Postgres) wakes the watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from ..domain import ids, pricing, validation
from ..domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from ..domain.input_fit import input_problem
from ..domain.input_policy import InputPolicy, InputRefused
from ..domain.presets import SYSTEM_PRESETS, resolve
from ..domain.states import OUTPUT_TERMINAL, TERMINAL, JobStatus, OutputStatus, final_status
from ..events.hub import EventHub, coalesce
from ..events.listener import EVENTS_CHANNEL, TASKS_CHANNEL
from ..storage.origins import OriginRefused, Origins
from ..store.models import Job, Output, Task
from ..store.store import JobRecord, Store, Tx, now
from . import views

log = logging.getLogger(__name__)

S = job_pb2.JobStage
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# Output progress stays below 100 until the output is recorded COMPLETED, and
# job progress below 100 until the job is COMPLETED.
RUNNING_PROGRESS_CAP = 99.0

# (origin, job_id, output_id, path) -> (url, expiry)
FileUrl = Callable[[str, str, str, str], tuple[str, datetime]]


class JobService:
    def __init__(
        self,
        store: Store,
        hub: EventHub,
        policy: InputPolicy,
        *,
        file_url: FileUrl,
        lease_seconds: float,
        max_task_attempts: int,
        remove_output_files: Callable[[str, str], int] | None = None,
        origins: Origins | None = None,
        default_origin: str = "",
    ) -> None:
        self.store = store
        self.hub = hub
        self.policy = policy
        self.file_url = file_url
        self.lease_seconds = lease_seconds
        self.max_task_attempts = max_task_attempts
        self.remove_output_files = remove_output_files
        self.origins = origins
        self.default_origin = default_origin
        self.task_queued = asyncio.Event()

    # -- notifications ------------------------------------------------------------

    async def _commit_events(self, tx: Tx, job_id: str) -> None:
        await tx.notify(EVENTS_CHANNEL, job_id)

    def _published(self, job_id: str) -> None:
        if not self.store.is_postgres:
            self.hub.poke(job_id)

    def on_events_notification(self, payload: str) -> None:
        if payload == "*":
            self.hub.poke_all()
        else:
            self.hub.poke(payload)

    def on_task_notification(self, _payload: str) -> None:
        self.task_queued.set()

    async def _queue_tasks(self, tx: Tx, tasks: list[Task]) -> None:
        await tx.insert_tasks(tasks)
        await tx.notify(TASKS_CHANNEL, "")

    def _tasks_committed(self) -> None:
        self.task_queued.set()

    async def _emit(self, tx: Tx, job_id: str, **event: Any) -> int:
        moment = now()

        def payload(sequence: int) -> bytes:
            response = job_service_pb2.WatchResponse(sequence=sequence, **event)
            response.time.FromDatetime(moment)
            return response.SerializeToString()

        sequence = await tx.append_event(job_id, payload)
        await self._commit_events(tx, job_id)
        return sequence

    async def _move(
        self,
        tx: Tx,
        job_id: str,
        target: JobStatus,
        *,
        stage: int = 0,
        error: job_pb2.JobError | None = None,
        **values: Any,
    ) -> None:
        """One guarded transition and its status_change event, in the caller's transaction."""
        if error is not None:
            values["error"] = error.SerializeToString()
        source = await tx.transition_job(job_id, target, stage=stage, **values)
        await self._emit_status(tx, job_id, source, target, stage, error)

    async def _emit_status(
        self, tx: Tx, job_id: str, source: str, target: JobStatus, stage: int = 0, error=None
    ) -> None:
        change = job_service_pb2.StatusChangeEvent(
            from_status=views.job_status_enum(source),
            to_status=views.job_status_enum(target),
            stage=stage,
        )
        if error is not None:
            change.error.CopyFrom(error)
        await self._emit(tx, job_id, status_change=change)

    async def _emit_completed(self, tx: Tx, job_id: str) -> None:
        record = await tx.get_job(None, job_id)
        await self._emit(
            tx, job_id, completed=job_service_pb2.CompletedEvent(job=views.job_message(record))
        )

    async def _emit_output(self, tx: Tx, job: Job, output_id: str) -> None:
        record = await tx.get_job(None, job.id)
        output = next(o for o in record.outputs if o.id == output_id)
        await self._emit(
            tx,
            job.id,
            output=job_service_pb2.OutputEvent(output=views.output_message(output, job.currency)),
        )

    def job_message(self, record: JobRecord) -> job_pb2.Job:
        return views.job_message(record, self.file_url)

    # -- public API ---------------------------------------------------------------

    async def create(
        self, organization_id: str, request: job_service_pb2.CreateRequest, header_key: str
    ) -> job_pb2.Job:
        validation.validate_create(request, self.policy, set(SYSTEM_PRESETS))
        origin = request.output_origin or self.default_origin
        if self.origins is not None:
            try:
                self.origins.check(origin)
            except OriginRefused as refused:
                raise InvalidArgument([FieldViolation("output_origin", str(refused))]) from None
        await self._check_hosts(request)
        key = request.idempotency_key or header_key or None
        if key and len(key) > validation.MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument([FieldViolation("idempotency_key", "at most 128 characters")])
        async with self.store.transaction() as tx:
            if key and (existing := await tx.job_by_idempotency_key(organization_id, key)):
                return self.job_message(existing)
            moment = now()
            priority = request.priority or job_pb2.PRIORITY_STANDARD
            job = Job(
                id=ids.job_id(),
                organization_id=organization_id,
                status=str(JobStatus.PENDING),
                stage=0,
                progress=0.0,
                priority=priority,
                delayed_start=request.delayed_start,
                input_url=request.input_url,
                concat_input_urls=list(request.concat_input_urls),
                job_metadata=dict(request.metadata),
                webhook_url=request.webhook_url,
                idempotency_key=key,
                output_origin=origin,
                currency=await tx.organization_currency(organization_id),
                attempt=1,
                last_sequence=0,
                created_at=moment,
                updated_at=moment,
            )
            outputs = [
                Output(
                    id=ids.output_id(),
                    job_id=job.id,
                    position=position,
                    spec=resolve(spec).SerializeToString(),
                    status=str(OutputStatus.PENDING),
                    progress=0.0,
                )
                for position, spec in enumerate(request.outputs)
            ]
            await tx.insert_job(job, outputs)
            await self._queue_tasks(tx, [self._probe_task(job)])
            record = JobRecord(job, outputs)
        self._tasks_committed()
        return self.job_message(record)

    async def _check_hosts(self, request: job_service_pb2.CreateRequest) -> None:
        """Resolve http(s) hosts off the event loop; refuse private destinations."""
        violations = []
        urls = [("input_url", request.input_url)] + [
            (f"concat_input_urls[{i}]", url) for i, url in enumerate(request.concat_input_urls)
        ]
        for path, url in urls:
            try:
                await asyncio.to_thread(self.policy.check_resolved, url)
            except InputRefused as refused:
                violations.append(FieldViolation(path, str(refused)))
        if violations:
            raise InvalidArgument(violations)

    def _probe_task(self, job: Job) -> Task:
        return Task(
            id=ids.task_id(),
            job_id=job.id,
            output_id=None,
            kind="PROBE",
            status="QUEUED",
            priority=job.priority,
            attempts=0,
            lease_token=0,
            worker_id="",
            created_at=now(),
        )

    async def get(self, organization_id: str, job_id: str) -> job_pb2.Job:
        async with self.store.transaction() as tx:
            return self.job_message(await tx.get_job(organization_id, job_id))

    async def list(
        self, organization_id: str, request: job_service_pb2.ListRequest
    ) -> job_service_pb2.ListResponse:
        violations = []
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            violations.append(FieldViolation("page_size", f"must be between 1 and {MAX_PAGE_SIZE}"))
        if request.offset < 0:
            violations.append(FieldViolation("offset", "must not be negative"))
        statuses = []
        for index, status in enumerate(request.statuses):
            if status not in job_pb2.JobStatus.values() or status == 0:
                violations.append(FieldViolation(f"statuses[{index}]", f"unknown status {status}"))
            else:
                statuses.append(JobStatus(views.job_status_name(status)))
        before = None
        if request.page_token:
            before = _decode_page_token(request.page_token)
            if before is None:
                violations.append(FieldViolation("page_token", "is not a token this server issued"))
        if violations:
            raise InvalidArgument(violations)
        limit = request.page_size or DEFAULT_PAGE_SIZE
        async with self.store.transaction() as tx:
            records = await tx.list_jobs(
                organization_id, statuses, limit + 1, request.offset, before
            )
        response = job_service_pb2.ListResponse(
            jobs=[self.job_message(record) for record in records[:limit]]
        )
        if len(records) > limit:
            last = records[limit - 1].job
            response.next_page_token = _encode_page_token(last.created_at, last.id)
        return response

    async def cancel(self, organization_id: str, job_id: str) -> job_pb2.Job:
        async with self.store.transaction() as tx:
            record = await tx.get_job(organization_id, job_id, lock=True)
            if JobStatus(record.job.status) in TERMINAL:
                raise FailedPrecondition(
                    f"job {job_id} is {record.job.status}; only a running job can be canceled"
                )
            await self._cancel_in(tx, record)
            record = await tx.get_job(organization_id, job_id)
        self._published(job_id)
        return self.job_message(record)

    async def _cancel_in(self, tx: Tx, record: JobRecord) -> None:
        job = record.job
        await tx.cancel_tasks(job.id)
        for output_id in await tx.cancel_open_outputs(job.id):
            await self._emit_output(tx, job, output_id)
        await self._settle_actual_cost(tx, job.id)
        await self._move(tx, job.id, JobStatus.CANCELED, completed_at=now())
        await self._emit_completed(tx, job.id)

    async def confirm(self, organization_id: str, job_id: str) -> job_pb2.Job:
        """Start a delayed_start job after its owner reviewed the estimate."""
        async with self.store.transaction() as tx:
            record = await tx.get_job(organization_id, job_id, lock=True)
            if record.job.status != JobStatus.AWAITING_CONFIRMATION:
                raise FailedPrecondition(
                    f"job {job_id} is {record.job.status}; only a job awaiting confirmation "
                    "can be confirmed"
                )
            moment = now()
            await self._move(
                tx,
                job_id,
                JobStatus.PROCESSING,
                stage=S.JOB_STAGE_TRANSCODING,
                confirmed_at=moment,
                started_at=moment,
            )
            await self._queue_transcodes(tx, record)
            record = await tx.get_job(organization_id, job_id)
        self._tasks_committed()
        self._published(job_id)
        return self.job_message(record)

    async def retry(self, organization_id: str, job_id: str) -> job_pb2.Job:
        """Run a FAILED, REJECTED, CANCELED or PARTIAL job again; COMPLETED outputs are kept."""
        async with self.store.transaction() as tx:
            record = await tx.get_job(organization_id, job_id, lock=True)
            job = record.job
            if job.status == JobStatus.COMPLETED or JobStatus(job.status) not in TERMINAL:
                raise FailedPrecondition(
                    f"job {job_id} is {job.status}; only a FAILED, REJECTED, CANCELED or "
                    "PARTIAL job can be retried"
                )
            for output in record.outputs:
                if output.status != OutputStatus.COMPLETED:
                    await tx.update_output(
                        output.id,
                        status=str(OutputStatus.PENDING),
                        progress=0.0,
                        error=None,
                        result=None,
                        actual_cost_micros=None,
                    )
                    await self._emit_output(tx, job, output.id)
            await self._move(
                tx,
                job_id,
                JobStatus.PENDING,
                attempt=job.attempt + 1,
                progress=0.0,
                error=None,
                completed_at=None,
                started_at=None,
                actual_cost_micros=None,
            )
            await self._queue_tasks(tx, [self._probe_task(job)])
            record = await tx.get_job(organization_id, job_id)
        self._tasks_committed()
        self._published(job_id)
        return self.job_message(record)

    async def delete_outputs(self, organization_id: str, job_id: str) -> tuple[job_pb2.Job, int]:
        """Remove a terminal job's stored files for good; the job record stays."""
        async with self.store.transaction() as tx:
            record = await tx.get_job(organization_id, job_id, lock=True)
            if JobStatus(record.job.status) not in TERMINAL:
                raise FailedPrecondition(
                    f"job {job_id} is {record.job.status}; cancel it or wait for it to end "
                    "before deleting its outputs"
                )
            deleted = 0
            if self.remove_output_files is not None:
                deleted = await asyncio.to_thread(
                    self.remove_output_files, record.job.output_origin, job_id
                )
            for output in record.outputs:
                if output.result:
                    result = worker_service_pb2.TranscodeResult.FromString(output.result)
                    del result.files[:]
                    result.notes.append("output files deleted")
                    await tx.update_output(output.id, result=result.SerializeToString())
            record = await tx.get_job(organization_id, job_id)
        return self.job_message(record), deleted

    async def watch(
        self, organization_id: str, request: job_service_pb2.WatchRequest
    ) -> AsyncIterator[job_service_pb2.WatchResponse]:
        if request.after_sequence < 0:
            raise InvalidArgument([FieldViolation("after_sequence", "must not be negative")])
        async with self.store.transaction() as tx:
            record = await tx.get_job(organization_id, request.id)
        resume = request.HasField("after_sequence")
        cursor = request.after_sequence if resume else 0
        if cursor > record.job.last_sequence:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "after_sequence",
                        f"job has no event {cursor} yet (last is {record.job.last_sequence})",
                    )
                ]
            )
        return self._stream(record, cursor, fresh=not resume)

    async def _stream(
        self, record: JobRecord, cursor: int, *, fresh: bool
    ) -> AsyncIterator[job_service_pb2.WatchResponse]:
        job_id = record.job.id
        subscription = self.hub.subscribe(job_id, cursor)
        try:
            if fresh:
                # Re-read after subscribing: whatever happens next is above this sequence.
                async with self.store.transaction() as tx:
                    record = await tx.get_job(None, job_id)
                subscription.cursor = record.job.last_sequence
                snapshot = job_service_pb2.WatchResponse(
                    sequence=record.job.last_sequence,
                    snapshot=job_service_pb2.SnapshotEvent(job=self.job_message(record)),
                )
                snapshot.time.GetCurrentTime()
                yield snapshot
                if JobStatus(record.job.status) in TERMINAL:
                    completed = job_service_pb2.WatchResponse(
                        sequence=record.job.last_sequence,
                        completed=job_service_pb2.CompletedEvent(job=self.job_message(record)),
                    )
                    completed.time.GetCurrentTime()
                    yield completed
                    return
            elif JobStatus(record.job.status) in TERMINAL and cursor >= record.job.last_sequence:
                return
            while True:
                batch = await subscription.next_batch()
                if batch is None:
                    heartbeat = job_service_pb2.WatchResponse(
                        sequence=subscription.cursor, heartbeat=job_service_pb2.HeartbeatEvent()
                    )
                    heartbeat.time.GetCurrentTime()
                    yield heartbeat
                    continue
                for event in coalesce(batch):
                    if event.HasField("completed"):
                        yield self._with_urls(event)
                        return
                    yield event
        finally:
            subscription.close()

    def _with_urls(self, event: job_service_pb2.WatchResponse) -> job_service_pb2.WatchResponse:
        """Sign download URLs at delivery: a logged event must not carry expired links."""
        signed = job_service_pb2.WatchResponse()
        signed.CopyFrom(event)
        job = signed.completed.job
        for output in job.outputs:
            for file in output.files:
                url, expires = self.file_url(job.output_origin, job.id, output.id, file.path)
                file.url = url
                file.url_expire_time.FromDatetime(expires)
        return signed

    # -- worker API ---------------------------------------------------------------

    async def claim(self, worker_id: str, wait_seconds: float) -> worker_service_pb2.Task | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            self.task_queued.clear()
            task = await self._claim_once(worker_id)
            if task is not None:
                return task
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # Woken at once by a task queued here (or NOTIFY on Postgres); the
            # timeout bounds the wait for tasks requeued by the lease reaper.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.task_queued.wait(), timeout=min(remaining, 1.0))

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
                    await self._move(tx, job.id, JobStatus.PROBING, stage=S.JOB_STAGE_PROBING)
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
                    await self._emit_output(tx, job, output.id)
                    published = job.id
        if published:
            self._published(published)
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
            await self._emit_output(tx, record.job, output.id)
            job_progress = min(
                sum(o.progress for o in record.outputs) / len(record.outputs), RUNNING_PROGRESS_CAP
            )
            if job_progress > record.job.progress:
                stage = request.stage or S.JOB_STAGE_TRANSCODING
                await tx.update_job(record.job.id, progress=job_progress, stage=stage)
                await self._emit(
                    tx,
                    record.job.id,
                    progress=job_service_pb2.ProgressEvent(progress=job_progress, stage=stage),
                )
            published = record.job.id
        if published:
            self._published(published)
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
                    await self._probe_failed(tx, record, request.error)
            elif kind == "transcode":
                await self._output_done(tx, record, task.output_id, request.transcode)
            else:
                await self._output_failed(tx, record, task.output_id, request.error)
        if tasks_queued:
            self._tasks_committed()
        self._published(task.job_id)

    async def _probed(self, tx: Tx, record: JobRecord, info: job_pb2.InputInfo) -> bool:
        job = record.job
        video = next((s for s in info.streams if s.kind == "video"), None)
        specs = [job_pb2.OutputSpec.FromString(output.spec) for output in record.outputs]
        if (problem := input_problem(info, specs)) is not None:
            await self._probe_failed(tx, record, problem)
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
            await self._move(tx, job.id, JobStatus.AWAITING_CONFIRMATION, **values)
            return False
        await self._move(
            tx,
            job.id,
            JobStatus.PROCESSING,
            stage=S.JOB_STAGE_TRANSCODING,
            started_at=now(),
            **values,
        )
        await self._queue_transcodes(tx, record)
        return True

    async def _queue_transcodes(self, tx: Tx, record: JobRecord) -> None:
        tasks = [
            Task(
                id=ids.task_id(),
                job_id=record.job.id,
                output_id=output.id,
                kind="TRANSCODE",
                status="QUEUED",
                priority=record.job.priority,
                attempts=0,
                lease_token=0,
                worker_id="",
                created_at=now(),
            )
            for output in record.outputs
            if output.status
            == OutputStatus.PENDING  # a retried PARTIAL job keeps its completed ones
        ]
        await self._queue_tasks(tx, tasks)

    async def _probe_failed(self, tx: Tx, record: JobRecord, error: job_pb2.JobError) -> None:
        """Bad input makes the job REJECTED; anything else (a worker fault) FAILED."""
        job = record.job
        error.stage = error.stage or S.JOB_STAGE_PROBING
        target = JobStatus.REJECTED if error.code.startswith("INPUT_") else JobStatus.FAILED
        for output_id in await tx.cancel_open_outputs(job.id):
            await self._emit_output(tx, job, output_id)
        await self._move(tx, job.id, target, error=error, completed_at=now())
        await self._emit_completed(tx, job.id)

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
        await self._emit_output(tx, job, output_id)
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
        await self._emit_output(tx, job, output_id)
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
        await self._settle_actual_cost(tx, job_id)
        await self._move(tx, job_id, target, error=failure, **values)
        if target == JobStatus.COMPLETED:
            # 100 is reported only once the job is COMPLETED.
            await self._emit(tx, job_id, progress=job_service_pb2.ProgressEvent(progress=100.0))
        await self._emit_completed(tx, job_id)

    async def _settle_actual_cost(self, tx: Tx, job_id: str) -> None:
        record = await tx.get_job(None, job_id)
        total = sum(o.actual_cost_micros or 0 for o in record.outputs)
        await tx.update_job(job_id, actual_cost_micros=total)

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
                        await self._move(
                            tx, task.job_id, JobStatus.FAILED, error=error, completed_at=now()
                        )
                        await self._emit_completed(tx, task.job_id)
                else:
                    await self._output_failed(tx, record, task.output_id, error)
                touched.append(task.job_id)
        if expired:
            self._tasks_committed()
        for job_id in touched:
            self._published(job_id)


def _output_seconds(spec: job_pb2.OutputSpec, source_seconds: float) -> float:
    start = spec.clip.start_seconds if spec.HasField("clip") else 0.0
    remaining = max(source_seconds - start, 0.0)
    if spec.HasField("clip") and spec.clip.duration_seconds:
        return min(spec.clip.duration_seconds, remaining)
    return remaining


def _encode_page_token(created: datetime, job_id: str) -> str:
    import base64

    return base64.urlsafe_b64encode(f"{created.isoformat()}|{job_id}".encode()).decode()


def _decode_page_token(token: str) -> tuple[datetime, str] | None:
    import base64

    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError):
        return None
