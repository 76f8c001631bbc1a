"""Jobs: inserts, reads with their outputs, and status changes guarded in the statement.

A status UPDATE names the source statuses the transition table in domain.states allows;
no row changed means the transition lost a race or was never allowed, and the caller
gets a domain error.

Every UPDATE here is also applied to the session's copy of the row (SQLAlchemy evaluates
its WHERE against the objects the session holds), so a JobRecord read under the job's
lock stays current for the rest of the transaction and need not be read again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import psycopg
from sqlalchemy import select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ..domain import states
from ..domain.errors import FailedPrecondition, NotFound
from ..domain.new_records import NewJob, NewTask
from ..domain.states import JobStatus, OutputStatus
from .database import (
    KEEP_HELD_ROWS_CURRENT,
    NOTIFY_SQL,
    Statements,
    aware,
    now,
    rows_changed,
)
from .job_snapshots import JobSnapshot, snapshot_of
from .models import Job, Organization, Output, Task
from .row_encoding import insert_from_json, insert_rows, json_rows, new_row
from .task_queue import new_task_row

IDEMPOTENCY_CONSTRAINT = "uq_jobs_idempotency"


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
    """A job and its outputs as ORM rows of a transaction (for decisions and writes);
    answers are built from its snapshot()."""

    job: Job
    outputs: list[Output]

    def snapshot(self) -> JobSnapshot:
        return snapshot_of(self.job, self.outputs)


@dataclass(frozen=True)
class NewJobRows:
    """New jobs' rows, built from their values and not yet inserted: each job with its
    outputs (what its Create answers with) and the jobs' first tasks."""

    records: list[JobRecord]
    tasks: list[Task]


def _new_job_record(new: NewJob) -> JobRecord:
    """A new job's rows: PENDING at attempt 1, nothing logged, its outputs PENDING."""
    job = new_row(
        Job,
        id=new.id,
        organization_id=new.organization_id,
        status=JobStatus.PENDING.value,
        stage=0,
        progress=0.0,
        priority=new.priority,
        delayed_start=new.delayed_start,
        input_url=new.input_url,
        concat_input_urls=list(new.concat_input_urls),
        job_metadata=dict(new.metadata),
        webhook_url=new.webhook_url,
        idempotency_key=new.idempotency_key,
        request_hash=new.request_hash,
        output_origin=new.output_origin,
        input_origin_id=new.input_origin_id,
        input_path=new.input_path,
        output_origin_id=new.output_origin_id,
        output_path_prefix=new.output_path_prefix,
        qc_policy=new.qc_policy,
        currency="USD",  # the organization's, set as the job is inserted
        attempt=1,
        last_sequence=0,
        created_at=new.created_at,
        updated_at=new.created_at,
    )
    outputs = [
        new_row(
            Output,
            id=output.id,
            job_id=new.id,
            position=output.position,
            spec=output.spec,
            status=OutputStatus.PENDING.value,
            progress=0.0,
            origin=output.origin,
        )
        for output in new.outputs
    ]
    return JobRecord(job, outputs)


def _violates_idempotency_key(error: Exception) -> bool:
    # psycopg names the constraint (SQLAlchemy wraps its error); SQLite only names its columns.
    driver_error = getattr(error, "orig", error)
    constraint = getattr(getattr(driver_error, "diag", None), "constraint_name", None)
    if constraint is not None:
        return constraint == IDEMPOTENCY_CONSTRAINT
    return "jobs.organization_id, jobs.idempotency_key" in str(driver_error)


class JobStatements(Statements):
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

    @staticmethod
    def new_job_rows(jobs: Sequence[NewJob], tasks: Sequence[NewTask]) -> NewJobRows:
        """The rows of new jobs and their first tasks, for `insert_new_jobs` (no I/O: the
        caller may announce the tasks in between, so that the announcement's NOTIFY rides
        along with the inserts)."""
        return NewJobRows(
            [_new_job_record(new) for new in jobs], [new_task_row(task) for task in tasks]
        )

    async def insert_new_jobs(self, new: NewJobRows) -> None:
        """Insert new jobs with their outputs and first tasks; each job is given its
        organization's currency (set on the rows, which stay detached, as built). On
        PostgreSQL the NOTIFYs the transaction asked for so far go in the same round trip.

        IdempotencyKeyTaken when the one job's key was already taken; with several jobs,
        any refusal fails them all (retry them singly).
        """
        jobs = [(record.job, record.outputs) for record in new.records]
        tasks = new.tasks
        if not self.is_postgres:
            organizations = sorted({job.organization_id for job, _ in jobs})
            currencies = dict(
                (
                    await self.session.execute(
                        select(Organization.id, Organization.currency).where(
                            Organization.id.in_(organizations)
                        )
                    )
                ).all()
            )
            for job, _ in jobs:
                job.currency = currencies.get(job.organization_id, "USD")
            await self.insert_jobs(jobs)
            if tasks:
                statement, rows = insert_rows(tasks)
                await self.session.execute(statement, rows)
            return
        # PostgreSQL: one statement for the whole batch, sent with the transaction's NOTIFYs
        # in one round trip through the driver (past SQLAlchemy's per-statement work). The
        # rows go as one JSON array per table, encoded in C: a statement per row cost a
        # send() each, the largest part of a batch's CPU. Each job takes its organization's
        # currency as it goes in, and the statement returns which.
        driver = cast(psycopg.AsyncConnection, await self.driver())
        outputs = [output for _, outputs in jobs for output in outputs]
        cursor = driver.cursor()
        try:
            async with driver.pipeline(), driver.cursor() as notify:
                await cursor.execute(
                    _NEW_JOBS_SQL,
                    (
                        json_rows([job for job, _ in jobs]),
                        json_rows(outputs),
                        json_rows(tasks),
                    ),
                )
                # NOTIFYs this transaction asked for so far (its tasks' wake-up) ride along:
                # PostgreSQL delivers them at commit, wherever in the transaction they were.
                for notification in self._tx.take_pending_notifications():
                    await notify.execute(NOTIFY_SQL, notification)
            # Read once the pipeline is synced: the results come back together.
            currencies = dict(await cursor.fetchall())
        except psycopg.errors.UniqueViolation as error:
            if len(jobs) == 1 and jobs[0][0].idempotency_key and _violates_idempotency_key(error):
                raise IdempotencyKeyTaken(jobs[0][0].idempotency_key) from error
            raise
        finally:
            await cursor.close()
        for job, _ in jobs:
            job.currency = currencies[job.organization_id]

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
            # The lock first, in a statement of its own, then the read: a join that waits for
            # the job's lock re-reads only the locked row once it has it (PostgreSQL, READ
            # COMMITTED), and returned the outputs as they were before the wait. Two outputs
            # completing at once then each saw the other still running, and neither ended the
            # job (seen: a job held at 99 % with every output COMPLETED).
            await self.session.execute(select(Job.id).where(Job.id == job_id).with_for_update())
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
        """Guarded in the statement, like every lifecycle: only the table's sources for
        `target`, and only the status the caller read (its event names it as the source)."""
        result = await self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status.in_(states.job_sources(target)),
                Job.status == str(current),
            )
            .values(status=str(target), updated_at=now(), **values)
            .execution_options(**KEEP_HELD_ROWS_CURRENT)
        )
        if rows_changed(result) == 1:
            return current
        if not states.can_transition(current, target):
            raise FailedPrecondition(f"job {job_id} is {current}; it cannot become {target}")
        raise FailedPrecondition(f"job {job_id} changed concurrently; it cannot become {target}")

    async def update_job(self, job_id: str, **values) -> None:
        await self.session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(updated_at=now(), **values)
            .execution_options(**KEEP_HELD_ROWS_CURRENT)
        )


_MOMENTS = ("created_at", "updated_at", "probed_at", "confirmed_at", "started_at", "completed_at")


def _make_times_aware(job: Job) -> None:
    """SQLite hands back naive datetimes (all stored as UTC). Set as the loaded value, not as
    a change: a plain setattr marks the row dirty and every read would commit an UPDATE."""
    for moment in _MOMENTS:
        value = getattr(job, moment)
        if value is not None and value.tzinfo is None:
            set_committed_value(job, moment, aware(value))


# A batch of new jobs with their outputs and tasks in one statement (three JSON arrays);
# each job takes its organization's currency, and the statement answers which.
_NEW_JOBS_SQL = (
    "WITH new_jobs AS ("
    + insert_from_json(
        Job, {"currency": '(SELECT currency FROM organizations WHERE id = r."organization_id")'}
    )
    + " RETURNING organization_id, currency), new_outputs AS ("
    + insert_from_json(Output, {})
    + "), new_tasks AS ("
    + insert_from_json(Task, {})
    + ") SELECT DISTINCT organization_id, currency FROM new_jobs"
)
