"""Group commit for Create: jobs validated by concurrent callers share one transaction.

Each Create validates on its own (its own errors, at once), then hands its rows here. One
writer at a time drains what has queued: every job waiting is inserted, with its outputs
and probe task, in one transaction and one commit, and each caller gets its own record
back. Nothing waits on a timer: while a commit is in flight the next callers queue, so a
lone Create costs what it did and a busy server commits many at once.

A batch that fails (a reused idempotency key, a constraint) is retried one job per
transaction, so each caller gets its own answer or its own error and no job is lost
because another in the same batch was refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..store.models import Job, Output, Task
from ..store.store import JobRecord, Store, Tx

log = logging.getLogger(__name__)

# Enough to amortize a commit; small enough that one batch's transaction stays short.
MAX_BATCH = 128


@dataclass
class NewJob:
    """One caller's rows, and where its answer goes."""

    job: Job
    outputs: list[Output]
    task: Task
    answer: asyncio.Future[JobRecord] = field(init=False, repr=False)


# Queues the batch's tasks in the caller's transaction (dispatch included).
QueueTasks = Callable[[Tx, list[Task]], Awaitable[None]]


class CreateBatcher:
    def __init__(self, store: Store, queue_tasks: QueueTasks, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.queue_tasks = queue_tasks
        self.max_batch = max_batch
        self._waiting: list[NewJob] = []
        self._writer: asyncio.Task | None = None
        # How many transactions and jobs went through (the tests and benchmarks read it).
        self.commits = 0
        self.jobs = 0

    async def insert(self, new: NewJob) -> JobRecord:
        """Insert the job; IdempotencyKeyTaken (or any store error) is this caller's alone."""
        new.answer = asyncio.get_running_loop().create_future()
        self._waiting.append(new)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="create-batcher")
        # shield: a caller that goes away does not cancel the writer's transaction.
        return await asyncio.shield(new.answer)

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            try:
                await self._write(batch)
            except Exception as error:
                if len(batch) == 1:
                    _answer_error(batch[0], error)
                    continue
                log.info("a batch of %d Creates failed; inserting them one by one", len(batch))
                for new in batch:
                    try:
                        await self._write([new])
                    except Exception as own_error:
                        _answer_error(new, own_error)

    async def _write(self, batch: list[NewJob]) -> None:
        async with self.store.transaction() as tx:
            currencies = await tx.organization_currencies({n.job.organization_id for n in batch})
            for new in batch:
                new.job.currency = currencies.get(new.job.organization_id, "USD")
            await tx.insert_jobs([(new.job, new.outputs) for new in batch])
            await self.queue_tasks(tx, [new.task for new in batch])
        self.commits += 1
        self.jobs += len(batch)
        for new in batch:
            if not new.answer.done():
                new.answer.set_result(JobRecord(new.job, new.outputs))


def _answer_error(new: NewJob, error: Exception) -> None:
    if not new.answer.done():
        new.answer.set_exception(error)
        # Retrieved here too: a caller that went away must not leave an unread exception.
        new.answer.add_done_callback(lambda answer: answer.exception())
