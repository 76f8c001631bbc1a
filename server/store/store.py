"""The store: one transaction type assembled from each aggregate's statements.

SQL is issued only in this package, one module per aggregate (jobs, outputs, events,
task_queue, task_outbox, webhook_outbox, webhook_settings, presets, origins, keys, workers,
content_keys, queue_outlook) over the unit of work in database.py; a transaction holds each
as a repository (`tx.jobs.get_job(...)`, `tx.tasks.claim_ready_task(...)`), all on its one
session. Status writes are guarded in the statement itself (`... WHERE status IN (allowed
sources)`, the sources coming from the one transition table in domain.states); no row
changed means the transition lost a race or was never allowed, and the caller gets a domain
error.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession

from .content_keys import ContentKeyStatements
from .database import Database, TxBase, async_url, now, sync_url
from .events import EventStatements
from .job_snapshots import JobSnapshot, OutputRow, output_row_of, read_job
from .jobs import IdempotencyKeyTaken, JobRecord, JobStatements
from .keys import API_KEY_PREFIX, KeyStatements
from .origins import OriginStatements
from .outputs import OutputStatements
from .presets import PresetStatements
from .queue_outlook import QueueOutlook
from .task_outbox import TaskOutboxQueries
from .task_queue import TaskQueue
from .webhook_outbox import WebhookOutbox
from .webhook_settings import WebhookSettingsStatements
from .workers import WorkerStatements

__all__ = [
    "API_KEY_PREFIX",
    "IdempotencyKeyTaken",
    "JobRecord",
    "JobSnapshot",
    "OutputRow",
    "Store",
    "Tx",
    "async_url",
    "now",
    "output_row_of",
    "sync_url",
]


class Tx(TxBase):
    """One transaction: each aggregate's statements under its own name, all on one session."""

    def __init__(self, session: AsyncSession, is_postgres: bool) -> None:
        super().__init__(session, is_postgres)
        self.jobs = JobStatements(self)
        self.outputs = OutputStatements(self)
        self.events = EventStatements(self)
        self.tasks = TaskQueue(self)
        self.task_outbox = TaskOutboxQueries(self)
        self.webhook_deliveries = WebhookOutbox(self)
        self.webhook_settings = WebhookSettingsStatements(self)
        self.presets = PresetStatements(self)
        self.origins = OriginStatements(self)
        self.keys = KeyStatements(self)
        self.workers = WorkerStatements(self)
        self.queue_outlook = QueueOutlook(self)
        self.content_keys = ContentKeyStatements(self)


class Store(Database):
    """Owns the engine; every read and write goes through a transaction."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A unit of work; its after-commit callbacks run once it committed, never on rollback."""
        return self.unit_of_work(Tx)

    def reading(self) -> AbstractAsyncContextManager[Tx]:
        """Reads only, without a transaction (see Database.read_only)."""
        return self.read_only(Tx)

    async def read_job(self, organization_id: str, job_id: str) -> JobSnapshot:
        """A job with its outputs for an answer (Get, a Watch's snapshot), read directly:
        see job_snapshots.read_job. NotFound also for another organization's job."""
        return await read_job(self, organization_id, job_id)
