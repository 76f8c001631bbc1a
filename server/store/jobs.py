"""Jobs and their outputs: reads, and status changes guarded in the statement itself.

A status UPDATE names the source statuses the transition table in domain.states allows;
no row changed means the transition lost a race or was never allowed, and the caller
gets a domain error (or False).

Every UPDATE here is also applied to the session's copy of the row (SQLAlchemy evaluates
its WHERE against the objects the session holds), so a JobRecord read under the job's
lock stays current for the rest of the transaction and need not be read again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ..domain import states
from ..domain.errors import FailedPrecondition, NotFound
from ..domain.states import JobStatus, OutputStatus
from .database import TxBase, aware, insert_rows, now, rows_changed
from .models import Job, Output

IDEMPOTENCY_CONSTRAINT = "uq_jobs_idempotency"
# Fail loudly, rather than leave a held record stale, if an UPDATE cannot be mirrored.
KEEP_HELD_ROWS_CURRENT = {"synchronize_session": "evaluate"}


class IdempotencyKeyTaken(Exception):
    """Another transaction committed a job with this organization and idempotency key first.

    The transaction that raised it is lost (PostgreSQL aborts it): read the winner in a
    new one.
    """

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass
class JobRecord:
    job: Job
    outputs: list[Output]


def _violates_idempotency_key(error: IntegrityError) -> bool:
    # psycopg names the constraint; SQLite only names its columns.
    constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if constraint is not None:
        return constraint == IDEMPOTENCY_CONSTRAINT
    return "jobs.organization_id, jobs.idempotency_key" in str(error.orig)


class JobStatements(TxBase):
    async def job_by_idempotency_key(self, organization_id: str, key: str) -> JobRecord | None:
        job = await self.session.scalar(
            select(Job).where(Job.organization_id == organization_id, Job.idempotency_key == key)
        )
        return await self._record(job) if job else None

    async def jobs_of_organization(self, organization_id: str, job_ids: Sequence[str]) -> set[str]:
        """Which of `job_ids` belong to the organization."""
        rows = await self.session.scalars(
            select(Job.id).where(Job.organization_id == organization_id, Job.id.in_(job_ids))
        )
        return set(rows.all())

    async def insert_job(self, job: Job, outputs: Sequence[Output]) -> None:
        """Insert a job and its outputs; IdempotencyKeyTaken when a racing Create won the key."""
        self.session.add(job)
        try:
            await self.session.flush()
        except IntegrityError as error:
            if job.idempotency_key is not None and _violates_idempotency_key(error):
                raise IdempotencyKeyTaken(job.idempotency_key) from error
            raise
        self.session.add_all(outputs)
        await self.session.flush()

    async def insert_jobs(self, jobs: Sequence[tuple[Job, Sequence[Output]]]) -> None:
        """Insert many jobs with their outputs: one multi-row INSERT per table. The objects
        are not attached to the session. IdempotencyKeyTaken when the one job's key was
        already taken; with several jobs, any refusal fails them all (retry them singly)."""
        statement, rows = insert_rows([job for job, _ in jobs])
        try:
            await self.session.execute(statement, rows)
        except IntegrityError as error:
            if len(jobs) == 1 and jobs[0][0].idempotency_key and _violates_idempotency_key(error):
                raise IdempotencyKeyTaken(jobs[0][0].idempotency_key) from error
            raise
        outputs = [output for _, outputs in jobs for output in outputs]
        if outputs:
            statement, rows = insert_rows(outputs)
            await self.session.execute(statement, rows)

    async def get_job(
        self, organization_id: str | None, job_id: str, *, lock: bool = False
    ) -> JobRecord:
        """The job with its outputs, in one statement (one consistent read even outside a
        transaction); NotFound also for another organization's job."""
        # populate_existing: guarded UPDATEs in this transaction may have changed the rows.
        query = (
            select(Job, Output)
            .outerjoin(Output, Output.job_id == Job.id)
            .where(Job.id == job_id)
            .order_by(Output.position)
            .execution_options(populate_existing=True)
        )
        if organization_id is not None:
            query = query.where(Job.organization_id == organization_id)
        if lock and self.is_postgres:
            query = query.with_for_update(of=Job)
        rows = (await self.session.execute(query)).all()
        if not rows:
            raise NotFound(f"job {job_id!r} not found")
        job = rows[0][0]
        _make_times_aware(job)
        return JobRecord(job, [output for _, output in rows if output is not None])

    async def list_jobs(
        self,
        organization_id: str,
        statuses: Sequence[JobStatus],
        limit: int,
        offset: int,
        before: tuple[datetime, str] | None,
    ) -> list[JobRecord]:
        query = select(Job).where(Job.organization_id == organization_id)
        if statuses:
            query = query.where(Job.status.in_([str(s) for s in statuses]))
        if before is not None:
            created, job_id = before
            # A row comparison, which an index on (…, created_at, id) answers as one range.
            query = query.where(tuple_(Job.created_at, Job.id) < tuple_(created, job_id))
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        if before is None and offset:
            query = query.offset(offset)
        return await self._records((await self.session.scalars(query)).all())

    async def _record(self, job: Job) -> JobRecord:
        return (await self._records([job]))[0]

    async def _records(self, jobs: Sequence[Job]) -> list[JobRecord]:
        """The jobs with their outputs, read in one query however many jobs there are."""
        if not jobs:
            return []
        rows = (
            await self.session.scalars(
                select(Output)
                .where(Output.job_id.in_([job.id for job in jobs]))
                .order_by(Output.job_id, Output.position)
                .execution_options(populate_existing=True)
            )
        ).all()
        outputs: dict[str, list[Output]] = {job.id: [] for job in jobs}
        for output in rows:
            outputs[output.job_id].append(output)
        for job in jobs:
            _make_times_aware(job)
        return [JobRecord(job, outputs[job.id]) for job in jobs]

    async def transition_job(self, job_id: str, target: JobStatus, **values) -> JobStatus:
        """Move a job to `target` if the transition table allows it; returns the old status.

        The UPDATE names the status it read, so a writer that raced us and won
        leaves this one with no row changed and a FailedPrecondition.
        """
        current = await self.session.scalar(select(Job.status).where(Job.id == job_id))
        if current is None:
            raise NotFound(f"job {job_id!r} not found")
        return await self._transition(job_id, JobStatus(current), target, values)

    async def transition_held_job(self, job: Job, target: JobStatus, **values) -> JobStatus:
        """`transition_job` for a job read under its lock in this transaction.

        Its status is known without another read; the UPDATE still names it.
        """
        return await self._transition(job.id, JobStatus(job.status), target, values)

    async def _transition(
        self, job_id: str, current: JobStatus, target: JobStatus, values: dict[str, Any]
    ) -> JobStatus:
        if not states.can_transition(current, target):
            raise FailedPrecondition(f"job {job_id} is {current}; it cannot become {target}")
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == str(current))
            .values(status=str(target), updated_at=now(), **values)
            .execution_options(**KEEP_HELD_ROWS_CURRENT)
        )
        if rows_changed(result) != 1:
            raise FailedPrecondition(
                f"job {job_id} changed concurrently; it cannot become {target}"
            )
        return current

    async def update_job(self, job_id: str, **values) -> None:
        await self.session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(updated_at=now(), **values)
            .execution_options(**KEEP_HELD_ROWS_CURRENT)
        )

    async def update_output(self, output_id: str, **values) -> None:
        """Values that are not the status (progress, costs, result)."""
        await self.session.execute(
            update(Output)
            .where(Output.id == output_id)
            .values(**values)
            .execution_options(**KEEP_HELD_ROWS_CURRENT)
        )

    async def move_output(self, output_id: str, target: OutputStatus, **values) -> bool:
        """Guarded status change: False when the output was not in an allowed source status."""
        result = await self.session.execute(
            update(Output)
            .where(Output.id == output_id, Output.status.in_(states.output_sources(target)))
            .values(status=str(target), **values)
            .execution_options(**KEEP_HELD_ROWS_CURRENT)
        )
        return rows_changed(result) == 1

    async def cancel_open_outputs(self, job_id: str) -> list[str]:
        sources = states.output_sources(OutputStatus.CANCELED)
        ids = (
            await self.session.scalars(
                select(Output.id).where(Output.job_id == job_id, Output.status.in_(sources))
            )
        ).all()
        await self.session.execute(
            update(Output)
            .where(Output.job_id == job_id, Output.status.in_(sources))
            .values(status=str(OutputStatus.CANCELED))
            .execution_options(**KEEP_HELD_ROWS_CURRENT)
        )
        return list(ids)


_MOMENTS = ("created_at", "updated_at", "probed_at", "confirmed_at", "started_at", "completed_at")


def _make_times_aware(job: Job) -> None:
    """SQLite hands back naive datetimes (all stored as UTC). Set as the loaded value, not as
    a change: a plain setattr marks the row dirty and every read would commit an UPDATE."""
    for moment in _MOMENTS:
        value = getattr(job, moment)
        if value is not None and value.tzinfo is None:
            set_committed_value(job, moment, aware(value))
