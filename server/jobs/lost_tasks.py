"""Tasks no worker will finish: leases that expired (the worker went silent) and Pub/Sub
messages that went to the dead-letter topic. Requeued while attempts remain, else failed
with a retryable error through the same outcome as a failed task.
"""

from __future__ import annotations

import logging

from kiln.v1 import job_pb2

from common.log_setup import job_log_context

from ..domain.errors import NotFound
from ..domain.states import TaskStatus
from ..store.models import Task
from ..store.outage import log_round_failure
from .lifecycle import Lifecycle
from .outcomes import TaskOutcomes

log = logging.getLogger(__name__)


class LostTasks:
    def __init__(self, life: Lifecycle, outcomes: TaskOutcomes, max_task_attempts: int) -> None:
        self.life = life
        self.outcomes = outcomes
        self.store = life.store
        self.max_task_attempts = max_task_attempts

    async def reap_expired_leases(self) -> int:
        """Requeue tasks whose worker went silent; fail them after too many attempts.

        Each candidate is handled in its own transaction, under the job's lock, by an UPDATE
        that still requires the same token and an expired lease: a lease renewed after the
        candidates were read is never taken. Returns how many leases were taken back.
        """
        async with self.store.transaction() as tx:
            candidates = await tx.tasks.expired_leases()
        taken = 0
        for candidate in candidates:
            try:
                with job_log_context(candidate.job_id, candidate.id):
                    taken += await self.reap(candidate)
            except Exception:
                log_round_failure(
                    log, "reaping task %s of job %s failed", candidate.id, candidate.job_id
                )
        return taken

    async def reap(self, candidate: Task) -> bool:
        """Take back one expired lease, if it is still expired under the same token."""
        requeue = candidate.attempts < self.max_task_attempts
        target = TaskStatus.QUEUED if requeue else TaskStatus.DONE
        async with self.store.transaction() as tx:
            record = await tx.jobs.get_job(None, candidate.job_id, lock=True)
            if not await tx.tasks.take_back_expired(candidate.id, candidate.lease_token, target):
                log.info("lease of task %s was renewed or ended meanwhile: kept", candidate.id)
                return False
            if requeue:
                # Dispatched as any ready task is (a new Pub/Sub message, or a NOTIFY).
                await self.life.dispatch.tasks_ready(tx, [candidate])
                log.warning(
                    "lease of task %s (job %s) expired: worker %r went silent; requeued "
                    "(attempt %d of %d)",
                    candidate.id,
                    candidate.job_id,
                    candidate.worker_id,
                    candidate.attempts,
                    self.max_task_attempts,
                )
            else:
                log.error(
                    "lease of task %s (job %s) expired on attempt %d (worker %r): attempts "
                    "exhausted, failing it",
                    candidate.id,
                    candidate.job_id,
                    candidate.attempts,
                    candidate.worker_id,
                )
                error = job_pb2.JobError(
                    code="WORKER_LOST",
                    message=f"no worker finished this task in {candidate.attempts} attempts",
                    retryable=True,
                )
                await self.outcomes.task_failed(tx, candidate, record, error)
        self.life.metrics.lease_expired("requeued" if requeue else "failed")
        return True

    async def dead_lettered(self, task_id: str, deliveries: int) -> None:
        """Pub/Sub gave up on the task's message: no worker could take it. A task still
        queued is given up too, failing its output (or, for a probe, the job) with a
        retryable error; a task leased or done meanwhile is left alone."""
        async with self.store.transaction() as tx:
            try:
                task = await tx.tasks.task(task_id)
            except NotFound:
                log.warning("dead-lettered message for unknown task %s dropped", task_id)
                return
            record = await tx.jobs.get_job(None, task.job_id, lock=True)
            if not await tx.tasks.give_up_queued(task_id):
                log.info("dead-lettered task %s is no longer queued: left alone", task_id)
                return
            log.error(
                "task %s of job %s: its message went to the dead-letter topic after %d "
                "deliveries; failing it",
                task_id,
                task.job_id,
                deliveries,
            )
            error = job_pb2.JobError(
                code="DISPATCH_DEAD_LETTERED",
                message=f"no worker could take this task: its message was delivered "
                f"{deliveries} times and moved to the dead-letter topic",
                retryable=True,
            )
            await self.outcomes.task_failed(tx, task, record, error)
