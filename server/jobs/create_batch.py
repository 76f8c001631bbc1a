"""Group commit for Create: jobs validated by concurrent callers share one transaction.

Each Create validates on its own (its own errors, at once), then hands its job here. One
writer at a time drains what has queued: every job waiting is inserted, with its outputs
and probe task, in one transaction and one commit, and each caller gets its own record
back. While a commit is in flight the next callers queue, so a lone Create costs what it
did and a busy server commits many at once.

A busy server also waits a little between commits: once a batch held several jobs, the
next starts no sooner than BUSY_INTERVAL after it. A batch has a fixed cost (a
transaction, its round trips, a flushed commit) that outweighs its jobs' own rows; on a
quiet machine the database answered so fast that batches stayed at three or four jobs and
that fixed cost took a quarter of the server's CPU per Create. Waiting up to 5 ms lets
twice as many share it, which gives more throughput and, since callers queue for the CPU
anyway, lower latency too. A lone Create, or two at once, never waits.

A batch that fails (a reused idempotency key, a constraint) is retried one job per
transaction, so each caller gets its own answer or its own error and no job is lost
because another in the same batch was refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..domain.new_records import NewJob, NewTask
from ..store.models import Task
from ..store.store import JobRecord, Store, Tx

log = logging.getLogger(__name__)

# Enough to amortize a commit; small enough that one batch's transaction stays short.
MAX_BATCH = 128
# A batch this large means the server is busy: the next one waits out BUSY_INTERVAL.
BUSY_BATCH = 3
BUSY_INTERVAL = 0.005  # seconds from one batch's start to the next one's


@dataclass
class AdmittedJob:
    """One caller's job and its probe task, and where its answer goes."""

    job: NewJob
    probe: NewTask
    answer: asyncio.Future[JobRecord] = field(init=False, repr=False)


# Says the batch's tasks (inserted with their jobs) are ready, in the batch's transaction.
TasksReady = Callable[[Tx, list[Task]], Awaitable[None]]


class CreateBatcher:
    def __init__(
        self,
        store: Store,
        tasks_ready: TasksReady,
        max_batch: int = MAX_BATCH,
        busy_interval: float = BUSY_INTERVAL,
    ) -> None:
        self.store = store
        self.tasks_ready = tasks_ready
        self.max_batch = max_batch
        self.busy_interval = busy_interval
        self._waiting: list[AdmittedJob] = []
        self._writer: asyncio.Task | None = None
        # When the last batch started (loop time), and how many jobs it took.
        self._last_start = 0.0
        self._last_size = 0
        # How many transactions and jobs went through (the tests and benchmarks read it).
        self.commits = 0
        self.jobs = 0

    async def insert(self, new: AdmittedJob) -> JobRecord:
        """Insert the job; IdempotencyKeyTaken (or any store error) is this caller's alone."""
        new.answer = asyncio.get_running_loop().create_future()
        self._waiting.append(new)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="create-batcher")
        # shield: a caller that goes away does not cancel the writer's transaction.
        return await asyncio.shield(new.answer)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            busy = self._last_size >= BUSY_BATCH and len(self._waiting) < self.max_batch
            if busy and (wait := self._last_start + self.busy_interval - loop.time()) > 0:
                await asyncio.sleep(wait)
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            self._last_start, self._last_size = loop.time(), len(batch)
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

    async def _write(self, batch: list[AdmittedJob]) -> None:
        async with self.store.transaction() as tx:
            rows = tx.jobs.new_job_rows([new.job for new in batch], [new.probe for new in batch])
            # Ready first, in the same transaction: its wake-up (a NOTIFY, delivered at
            # commit) then goes out in the inserts' round trip instead of one of its own.
            await self.tasks_ready(tx, rows.tasks)
            await tx.jobs.insert_new_jobs(rows)
        self.commits += 1
        self.jobs += len(batch)
        for new, record in zip(batch, rows.records, strict=True):
            if not new.answer.done():
                new.answer.set_result(record)


def _answer_error(new: AdmittedJob, error: Exception) -> None:
    if not new.answer.done():
        new.answer.set_exception(error)
        # Retrieved here too: a caller that went away must not leave an unread exception.
        new.answer.add_done_callback(lambda answer: answer.exception())
