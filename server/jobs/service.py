"""The public job use cases: what the JobService adapters call. Logic here, SQL in the store."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from urllib.parse import urlsplit

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from common.input_policy import InputPolicy, InputRefused
from common.storage.origins import OriginRefused, Origins

from ..delivery.links import PlaybackLinks
from ..domain import ids, validation
from ..domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from ..domain.idempotency import check_replay, request_fingerprint
from ..domain.presets import SYSTEM_PRESETS, resolve
from ..domain.states import TERMINAL, JobStatus, OutputStatus
from ..events.hub import coalesce
from ..store.jobs import new_row
from ..store.models import Job, Output
from ..store.store import IdempotencyKeyTaken, JobRecord, JobSnapshot, Tx, now
from ..tracing import stamp_tasks
from . import task_plan, variant_costs, views
from .create_batch import CreateBatcher, NewJob
from .lifecycle import Lifecycle
from .paging import page_limit, page_size_violation
from .presets import PresetCatalog
from .views import FileUrl

S = job_pb2.JobStage
# A completed event signed for one watcher is reused for others this long (links last an
# hour or more); and so many signed events are kept.
SIGNED_REUSE = 60.0
SIGNED_EVENTS_KEPT = 256
DEFAULT_PAGE_SIZE = 20


class JobService:
    def __init__(
        self,
        life: Lifecycle,
        policy: InputPolicy,
        *,
        file_url: FileUrl,
        playback: PlaybackLinks | None = None,
        remove_output_files: Callable[[str, str], int] | None = None,
        origins: Origins | None = None,
        default_origin: str = "",
        webhook_policy: InputPolicy | None = None,
        presets: PresetCatalog | None = None,
    ) -> None:
        self.life = life
        self.presets = presets or PresetCatalog(life.store)
        # Webhook destinations: public hosts only, unless allowlisted (no file roots).
        self.webhook_policy = webhook_policy or InputPolicy.from_lists([], [])
        self.store = life.store
        self.hub = life.hub
        self.policy = policy
        self.file_url = file_url
        self.playback = playback
        self.remove_output_files = remove_output_files
        self.origins = origins
        self.default_origin = default_origin
        # id(logged completed event) -> (event, when signed, signed copy): one signing per
        # event for all its watchers.
        self._signed_events: OrderedDict[
            int, tuple[job_service_pb2.WatchResponse, float, job_service_pb2.WatchResponse]
        ] = OrderedDict()
        # Whether a file:// input inside the input roots can lie in the output storage.
        self._file_inputs_may_name_outputs = origins is not None and any(
            root == origins.local.root
            or root in origins.local.root.parents
            or origins.local.root in root.parents
            for root in policy.roots
        )
        # Concurrent Creates share a transaction (group commit).
        self.creates = CreateBatcher(life.store, life.dispatch.tasks_ready)

    def job_message(self, record: JobRecord | JobSnapshot) -> job_pb2.Job:
        return views.job_message(record, self.file_url, self.playback)

    async def create(
        self, organization_id: str, request: job_service_pb2.CreateRequest, header_key: str
    ) -> job_pb2.Job:
        key = request.idempotency_key or header_key or None
        if key and len(key) > validation.MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument([FieldViolation("idempotency_key", "at most 128 characters")])
        # Only a keyed Create is ever compared with another: no fingerprint without a key.
        fingerprint = request_fingerprint(request) if key else ""
        # A repeat is answered from what was stored, before validation: its answer must not
        # change because a preset was deleted or a host's address moved since.
        if key and (first := await self._job_for_key(organization_id, key, fingerprint)):
            return first
        saved = await self.presets.saved_specs(
            organization_id, [output.preset for output in request.outputs if output.preset]
        )
        validation.validate_create(request, self.policy, set(SYSTEM_PRESETS) | set(saved))
        origin = request.output_origin or self.default_origin
        if self.origins is not None:
            try:
                self.origins.check(origin)
            except OriginRefused as refused:
                raise InvalidArgument([FieldViolation("output_origin", str(refused))]) from None
        await self._check_hosts(request)
        await self._check_not_foreign_outputs(organization_id, request)
        try:
            record = await self._insert(organization_id, request, key, fingerprint, origin, saved)
        except IdempotencyKeyTaken as taken:
            # A Create with the same key committed between our look-up and our insert, and
            # ours rolled back: answer as if we had arrived after it.
            first = await self._job_for_key(organization_id, taken.key, fingerprint)
            if first is None:
                raise  # jobs are never deleted, so the winner cannot have vanished
            return first
        return self.job_message(record)

    async def _job_for_key(
        self, organization_id: str, key: str, fingerprint: str
    ) -> job_pb2.Job | None:
        """The job this key already made, if any; AlreadyExists if made from another request."""
        async with self.store.transaction() as tx:
            existing = await tx.job_by_idempotency_key(organization_id, key)
        if existing is None:
            return None
        check_replay(key, existing.job.id, existing.job.request_hash, fingerprint)
        return self.job_message(existing)

    async def _insert(
        self,
        organization_id: str,
        request: job_service_pb2.CreateRequest,
        key: str | None,
        fingerprint: str,
        origin: str,
        saved: dict[str, job_pb2.OutputSpec],
    ) -> JobRecord:
        moment = now()
        job = new_row(
            Job,
            id=ids.job_id(),
            organization_id=organization_id,
            status=JobStatus.PENDING.value,
            stage=0,
            progress=0.0,
            priority=request.priority or job_pb2.PRIORITY_STANDARD,
            delayed_start=request.delayed_start,
            input_url=request.input_url,
            concat_input_urls=list(request.concat_input_urls),
            job_metadata=dict(request.metadata),
            webhook_url=request.webhook_url,
            idempotency_key=key,
            request_hash=fingerprint or None,
            output_origin=origin,
            currency="USD",  # the organization's, set by the batch that inserts it
            attempt=1,
            last_sequence=0,
            created_at=moment,
            updated_at=moment,
        )
        outputs = [
            new_row(
                Output,
                id=ids.output_id(),
                job_id=job.id,
                position=position,
                spec=resolve(spec, saved).SerializeToString(),
                status=OutputStatus.PENDING.value,
                progress=0.0,
            )
            for position, spec in enumerate(request.outputs)
        ]
        task = task_plan.probe_task(job)
        # Stamped here, in the caller's trace: the batch is written from another task.
        stamp_tasks([task])
        return await self.creates.insert(NewJob(job, outputs, task))

    async def _check_hosts(self, request: job_service_pb2.CreateRequest) -> None:
        """Resolve http(s) hosts off the event loop; refuse private destinations."""
        violations = []
        checks = [("input_url", request.input_url, self.policy)] + [
            (f"concat_input_urls[{i}]", url, self.policy)
            for i, url in enumerate(request.concat_input_urls)
        ]
        if request.webhook_url:
            checks.append(("webhook_url", request.webhook_url, self.webhook_policy))
        for path, url, policy in checks:
            try:
                if _resolves_a_name(url):
                    await asyncio.to_thread(policy.check_resolved, url)
                elif policy is not self.policy:
                    # No DNS to wait for: checked here, without a thread hop. (An input's
                    # syntax was checked by validate_create with this very policy.)
                    policy.check_resolved(url)
            except InputRefused as refused:
                violations.append(FieldViolation(path, str(refused)))
        if violations:
            raise InvalidArgument(violations)

    async def _check_not_foreign_outputs(
        self, organization_id: str, request: job_service_pb2.CreateRequest
    ) -> None:
        """An input inside kiln's own output storage must belong to one of the caller's jobs:
        one organization never reads another's renditions by naming them as input."""
        if self.origins is None:
            return
        inputs = [("input_url", request.input_url)] + [
            (f"concat_input_urls[{i}]", url) for i, url in enumerate(request.concat_input_urls)
        ]
        if not self._file_inputs_may_name_outputs:
            # Validation resolved each file:// input inside an input root, and no input root
            # overlaps the output storage: none can name outputs (no second path resolution).
            inputs = [(path, url) for path, url in inputs if not url.startswith("file:")]
        owners = {path: self.origins.output_job_ids(url) for path, url in inputs}
        named = {job_id for job_ids in owners.values() for job_id in job_ids}
        if not named:
            return
        async with self.store.transaction() as tx:
            own = await tx.jobs_of_organization(organization_id, sorted(named))
        violations = [
            FieldViolation(path, "names output storage of a job that is not one of yours")
            for path, job_ids in owners.items()
            if not job_ids <= own
        ]
        if violations:
            raise InvalidArgument(violations)

    async def get(self, organization_id: str, job_id: str) -> job_pb2.Job:
        return self.job_message(await self.store.read_job(organization_id, job_id))

    async def list(
        self, organization_id: str, request: job_service_pb2.ListRequest
    ) -> job_service_pb2.ListResponse:
        violations = []
        if (bad_size := page_size_violation(request.page_size, DEFAULT_PAGE_SIZE)) is not None:
            violations.append(bad_size)
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
        limit = page_limit(request.page_size, DEFAULT_PAGE_SIZE)
        async with self.store.reading() as tx:
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
                    f"job {job_id} is {record.job.status}; only a job that has not ended can "
                    "be canceled"
                )
            await self._cancel_in(tx, record)
            record = await tx.get_job(organization_id, job_id)
        return self.job_message(record)

    async def _cancel_in(self, tx: Tx, record: JobRecord) -> None:
        await tx.cancel_tasks(record.job.id)
        await self.life.jobs.finish(tx, record, JobStatus.CANCELED)

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
            await self.life.jobs.move(
                tx,
                record.job,
                JobStatus.PROCESSING,
                stage=S.JOB_STAGE_TRANSCODING,
                confirmed_at=moment,
                started_at=moment,
            )
            await self.life.queue_transcodes(tx, record)
            record = await tx.get_job(organization_id, job_id)
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
                    await tx.move_output(
                        output.id,
                        OutputStatus.PENDING,
                        progress=0.0,
                        error=None,
                        result=None,
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
            await self.life.queue_tasks(tx, [task_plan.probe_task(job)])
            record = await tx.get_job(organization_id, job_id)
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
        record = await self.store.read_job(organization_id, request.id)
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
        self, record: JobSnapshot, cursor: int, *, fresh: bool
    ) -> AsyncIterator[job_service_pb2.WatchResponse]:
        """The stream of a job `watch` read once. What was logged up to the sequence read is
        the snapshot (fresh) or the replay asked for (never coalesced); what is logged after
        it reaches the subscription, including what committed between the read and the
        subscribing: subscribing makes the hub read the job's log once more after the
        subscription joined, and every later commit pokes it."""
        # A fresh stream starts from a snapshot: it needs nothing logged before the sequence
        # read, so the hub is not made to page through the job's whole log.
        replay_through = record.job.last_sequence
        subscription = self.hub.subscribe(record.job.id, replay_through if fresh else cursor)
        try:
            if fresh:
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
                    if subscription.cursor < replay_through:
                        # The replay asked for is still being read: its events come next, and
                        # a heartbeat (sequence = cursor) must not cut into them.
                        continue
                    heartbeat = job_service_pb2.WatchResponse(
                        sequence=subscription.cursor, heartbeat=job_service_pb2.HeartbeatEvent()
                    )
                    heartbeat.time.GetCurrentTime()
                    yield heartbeat
                    continue
                for event in coalesce(batch, replay_through):
                    if event.HasField("completed"):
                        yield self._with_urls(event)
                        return
                    yield event
        finally:
            subscription.close()

    def _with_urls(self, event: job_service_pb2.WatchResponse) -> job_service_pb2.WatchResponse:
        """Sign download URLs at delivery: a logged event must not carry expired links. Every
        watcher of the job gets the same logged event object; it is signed once for all
        that receive it within SIGNED_EVENT_REUSE_SECONDS (and encoded once, on gRPC)."""
        key = id(event)
        moment = time.monotonic()
        cached = self._signed_events.get(key)
        if cached is not None and cached[0] is event and moment - cached[1] < SIGNED_REUSE:
            return cached[2]
        signed = job_service_pb2.WatchResponse()
        signed.CopyFrom(event)
        views.add_links(signed.completed.job, self.file_url, self.playback)
        self._signed_events[key] = (event, moment, signed)
        while len(self._signed_events) > SIGNED_EVENTS_KEPT:
            self._signed_events.popitem(last=False)
        return signed


def _resolves_a_name(url: str) -> bool:
    """Whether checking `url` looks a host name up (the one slow, blocking part)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False  # the check itself refuses it, quickly
    if parts.scheme.lower() not in ("http", "https") or not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _encode_page_token(created: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{job_id}".encode()).decode()


def _decode_page_token(token: str) -> tuple[datetime, str] | None:
    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError):
        return None
