"""The shared steps of a job's life: guarded transitions with their events, task queueing.

Every change of a job happens in one store transaction that also appends its Watch
events, so the event log and the job never disagree. After the commit the hub (this
process, SQLite) or NOTIFY (every process, Postgres) wakes the watchers. Both the public
API (service.py) and the worker API (tasks.py) change jobs only through these steps.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import Any

from kiln.v1 import job_pb2, job_service_pb2

from ..dispatch import Dispatch
from ..domain.new_records import NewTask
from ..domain.pricing_table import PricingTable, default_pricing_table
from ..domain.states import JobStatus, OutputStatus
from ..events.hub import EventHub
from ..events.listener import EVENTS_CHANNEL
from ..metrics import ServerMetrics
from ..store.models import Job, Output
from ..store.store import JobRecord, Store, Tx, now, output_row_of
from ..tracing import stamp_tasks
from ..webhooks import events as webhook_events
from ..webhooks.events import EventType
from . import task_plan, views
from .chunk_plan import ChunkSettings
from .chunk_reuse import KeptPieces
from .job_machine import JobMachine

S = job_pb2.JobStage
OUTPUT_EVENTS = {
    OutputStatus.COMPLETED: EventType.OUTPUT_COMPLETED,
    OutputStatus.FAILED: EventType.OUTPUT_FAILED,
}


class Lifecycle:
    def __init__(
        self,
        store: Store,
        hub: EventHub,
        dispatch: Dispatch,
        metrics: ServerMetrics | None = None,
        pricing: PricingTable | None = None,
        *,
        chunking: ChunkSettings | None = None,
        webhook_queued: asyncio.Event | None = None,
        live_copies_grace: float | None = None,
    ) -> None:
        self.store = store
        # The table estimates and actual costs are priced with (checked at start).
        self.pricing = pricing or default_pricing_table()
        self.metrics = metrics or ServerMetrics()
        self.hub = hub
        # Carries "these tasks are ready" to workers (the db queue's wake-up, or Pub/Sub).
        self.dispatch = dispatch
        # The webhook sender's wake-up, when this process runs one.
        self.webhook_queued = webhook_queued
        # Names this process in the NOTIFYs it sends, so it knows its own echoes.
        self.replica_id = secrets.token_hex(6)
        self.echoes_skipped = 0
        # When outputs are cut into chunks (KILN_CHUNK_*).
        self.chunking = chunking or ChunkSettings()
        # KILN_LIVE_COPIES_GRACE_SECONDS: how long a completed chunked MPEG-TS ladder keeps
        # its live copies (None: the default, by the output's length; 0: for ever).
        self.live_copies_grace = live_copies_grace
        # Every status change and ending of a job.
        self.jobs = JobMachine(self)

    def _wake_webhook_sender(self) -> None:
        """After a commit that queued a delivery (the sender also looks every second)."""
        if self.webhook_queued is not None:
            self.webhook_queued.set()

    def on_events_notification(self, payload: str) -> None:
        if payload == "*":
            self.hub.poke_all()
            return
        job_id, through, replica = parse_events_notification(payload)
        if replica == self.replica_id:
            # Our own commit: the hub was offered these events after it (see emit), and
            # re-reading them here would cost a query per event for nothing.
            self.echoes_skipped += 1
            return
        self.hub.poke(job_id, through)

    async def queue_tasks(self, tx: Tx, tasks: list[NewTask]) -> None:
        """New tasks, in the current trace, dispatched once the caller's transaction commits."""
        rows = await tx.tasks.insert_new_tasks(stamp_tasks(tasks))
        # A piece kept from an earlier attempt starts DONE: nothing for a worker to claim.
        await self.dispatch.tasks_ready(tx, [row for row in rows if row.reused_from is None])

    async def emit(self, tx: Tx, job_id: str, **event: Any) -> int:
        """Log one Watch event; once committed, this process's watchers get it directly."""
        moment = now()
        built: list[job_service_pb2.WatchResponse] = []

        def payload(sequence: int) -> bytes:
            response = job_service_pb2.WatchResponse(sequence=sequence, **event)
            response.time.FromDatetime(moment)
            built.append(response)
            return response.SerializeToString()

        sequence = await tx.events.append_event(job_id, payload)
        # Other replicas learn the job's newest sequence; this one skips its own echo.
        tx.notify_at_commit(
            EVENTS_CHANNEL, job_id, events_notification(job_id, sequence, self.replica_id)
        )
        # No read back from the log for events this process wrote: the hub takes them as is.
        tx.after_commit(functools.partial(self.hub.offer, job_id, built[0]))
        return sequence

    async def emit_completed(self, tx: Tx, record: JobRecord) -> None:
        """The terminal event; also queues the job's webhook in the same transaction.

        `record` must be current: read under the job's lock in this transaction.
        """
        job = views.job_message(record.snapshot())
        await self.emit(tx, record.job.id, completed=job_service_pb2.CompletedEvent(job=job))
        await self.notify_status(tx, record, job)

    async def notify_status(
        self, tx: Tx, record: JobRecord, job: job_pb2.Job | None = None
    ) -> None:
        """Queue the webhook event of the job's (current) status, if it has one."""
        event = webhook_events.STATUS_EVENTS.get(JobStatus(record.job.status))
        if event is not None:
            data = webhook_events.job_data(job or views.job_message(record.snapshot()))
            await self._queue_webhook(tx, record.job, event, data)

    async def notify_output(self, tx: Tx, job: Job, output: Output) -> None:
        """Queue output.completed or output.failed for an output that just ended so."""
        event = OUTPUT_EVENTS.get(OutputStatus(output.status))
        if event is not None:
            message = views.output_message(output_row_of(output), job.currency)
            data = webhook_events.output_data(job, message)
            await self._queue_webhook(tx, job, event, data)

    async def notify_progress(self, tx: Tx, record: JobRecord, before: float) -> None:
        """Queue job.progress for each threshold the job's progress just reached."""
        crossed = webhook_events.crossed_thresholds(before, record.job.progress)
        if not crossed:
            return
        job = views.job_message(record.snapshot())
        for threshold in crossed:
            data = webhook_events.progress_data(job, threshold)
            await self._queue_webhook(tx, record.job, EventType.JOB_PROGRESS, data)

    async def _queue_webhook(
        self, tx: Tx, job: Job, event: EventType, data: dict[str, Any]
    ) -> None:
        """One delivery in the caller's transaction; the sender is woken once it commits."""
        if await webhook_events.queue_event(tx, job, event, data):
            tx.after_commit(self._wake_webhook_sender)

    async def emit_output(self, tx: Tx, job: Job, output_id: str) -> None:
        """The output's event, re-read first: guarded UPDATEs may have changed the row."""
        record = await tx.jobs.get_job(None, job.id)
        output = next(o for o in record.outputs if o.id == output_id)
        await self.emit_output_row(tx, job, output)

    async def emit_output_row(self, tx: Tx, job: Job, output: Output) -> None:
        """The output's event from a row the caller holds current (the progress hot path)."""
        message = views.output_message(output_row_of(output), job.currency, now())
        await self.emit(tx, job.id, output=job_service_pb2.OutputEvent(output=message))

    async def queue_transcodes(
        self, tx: Tx, record: JobRecord, kept: KeptPieces | None = None
    ) -> None:
        """The tasks that make the job's outputs, dispatched once the transaction commits;
        pieces in `kept` (a retry's, chunk_reuse) start DONE instead."""
        await self.queue_tasks(tx, task_plan.transcode_tasks(record, self.chunking, kept))


def events_notification(job_id: str, sequence: int, replica_id: str) -> str:
    """The payload on the events channel: the job, its newest sequence, who wrote it."""
    return f"{job_id} {sequence} {replica_id}"


def parse_events_notification(payload: str) -> tuple[str, int, str]:
    """(job id, newest sequence, writer); a bare job id (older replicas) reads as
    (job id, 0, ""): poke, whatever the hub holds."""
    job_id, _, rest = payload.partition(" ")
    sequence, _, replica = rest.partition(" ")
    return job_id, int(sequence) if sequence.isdigit() else 0, replica
