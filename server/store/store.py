"""The only module that issues SQL.

`Store.transaction()` yields a `Tx` whose methods are the statements the
application needs. Status writes are guarded in the statement itself
(`... WHERE status IN (allowed sources)`, the sources coming from the one
transition table in domain.states); no row changed means the transition lost a
race or was never allowed, and the caller gets a domain error.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, event, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..domain import states
from ..domain.errors import FailedPrecondition, NotFound, StaleLease
from ..domain.states import DeliveryStatus, JobStatus, OutputStatus, TaskStatus
from .models import ApiKey, Job, JobEvent, Organization, Output, Preset, Task, WebhookDelivery

API_KEY_PREFIX = "kiln_sk_"
IDEMPOTENCY_CONSTRAINT = "uq_jobs_idempotency"


class IdempotencyKeyTaken(Exception):
    """Another transaction committed a job with this organization and idempotency key first.

    The transaction that raised it is lost (PostgreSQL aborts it): read the winner in a
    new one.
    """

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def now() -> datetime:
    return datetime.now(UTC)


def async_url(url: str) -> str:
    """Map a user-facing database URL to the async driver SQLAlchemy needs."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def sync_url(url: str) -> str:
    """The same database for synchronous tools (Alembic)."""
    if url.startswith("sqlite+aiosqlite:///"):
        return "sqlite:///" + url.removeprefix("sqlite+aiosqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def new_lease_token() -> int:
    """A fencing token nobody can guess: a worker that lost a lease cannot forge the next."""
    return secrets.randbits(62) + 1


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _rows_changed(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed (what every guarded status change is judged by)."""
    return cast(CursorResult[Any], result).rowcount


def _violates_idempotency_key(error: IntegrityError) -> bool:
    # psycopg names the constraint; SQLite only names its columns.
    constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if constraint is not None:
        return constraint == IDEMPOTENCY_CONSTRAINT
    return "jobs.organization_id, jobs.idempotency_key" in str(error.orig)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@dataclass
class JobRecord:
    job: Job
    outputs: list[Output]


class Store:
    """Owns the engine; every read and write goes through a transaction."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_postgres = self.url.startswith("postgresql")
        if self.is_postgres:
            self.engine: AsyncEngine = create_async_engine(self.url, pool_size=10, max_overflow=10)
        else:
            # One connection: SQLite has one writer anyway, and queueing here is
            # kinder than "database is locked" errors.
            self.engine = create_async_engine(
                self.url, pool_size=1, max_overflow=0, connect_args={"timeout": 30}
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A unit of work; its after-commit callbacks run once it committed, never on rollback."""
        async with self._sessions() as session, session.begin():
            tx = Tx(session, self.is_postgres)
            yield tx
        for callback in tx.committed_callbacks:
            callback()


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Tx:
    """The statements of one transaction."""

    def __init__(self, session: AsyncSession, is_postgres: bool) -> None:
        self.session = session
        self.is_postgres = is_postgres
        self.committed_callbacks: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.committed_callbacks.append(callback)

    # -- organizations and keys ---------------------------------------------------

    async def ensure_organization(self, organization_id: str, name: str = "") -> None:
        if await self.session.get(Organization, organization_id) is None:
            self.session.add(
                Organization(id=organization_id, name=name or organization_id, created_at=now())
            )
            await self.session.flush()

    async def create_api_key(self, organization_id: str, name: str = "") -> str:
        """Store a new key's hash and return the key itself (shown once)."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(24)
        self.session.add(
            ApiKey(
                id="key_" + secrets.token_hex(8),
                organization_id=organization_id,
                key_hash=hash_key(key),
                name=name,
                created_at=now(),
            )
        )
        await self.session.flush()
        return key

    async def organization_for_key(self, key: str) -> str | None:
        row = await self.session.scalar(
            select(ApiKey.organization_id).where(ApiKey.key_hash == hash_key(key))
        )
        return row

    async def organization_currency(self, organization_id: str) -> str:
        org = await self.session.get(Organization, organization_id)
        return org.currency if org else "USD"

    # -- jobs ---------------------------------------------------------------------

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

    async def get_job(
        self, organization_id: str | None, job_id: str, *, lock: bool = False
    ) -> JobRecord:
        """The job with its outputs; NotFound also for another organization's job."""
        # populate_existing: guarded UPDATEs in this transaction may have changed the row.
        query = select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
        if organization_id is not None:
            query = query.where(Job.organization_id == organization_id)
        if lock and self.is_postgres:
            query = query.with_for_update()
        job = await self.session.scalar(query)
        if job is None:
            raise NotFound(f"job {job_id!r} not found")
        return await self._record(job)

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
            query = query.where(
                or_(Job.created_at < created, (Job.created_at == created) & (Job.id < job_id))
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        if before is None and offset:
            query = query.offset(offset)
        jobs = (await self.session.scalars(query)).all()
        return [await self._record(job) for job in jobs]

    async def _record(self, job: Job) -> JobRecord:
        outputs = (
            await self.session.scalars(
                select(Output)
                .where(Output.job_id == job.id)
                .order_by(Output.position)
                .execution_options(populate_existing=True)
            )
        ).all()
        for moment in (
            "created_at",
            "updated_at",
            "probed_at",
            "confirmed_at",
            "started_at",
            "completed_at",
        ):
            setattr(job, moment, _aware(getattr(job, moment)))
        return JobRecord(job, list(outputs))

    async def transition_job(self, job_id: str, target: JobStatus, **values) -> JobStatus:
        """Move a job to `target` if the transition table allows it; returns the old status.

        The UPDATE names the status it read, so a writer that raced us and won
        leaves this one with no row changed and a FailedPrecondition.
        """
        current = await self.session.scalar(select(Job.status).where(Job.id == job_id))
        if current is None:
            raise NotFound(f"job {job_id!r} not found")
        if not states.can_transition(JobStatus(current), target):
            raise FailedPrecondition(f"job {job_id} is {current}; it cannot become {target}")
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == current)
            .values(status=str(target), updated_at=now(), **values)
        )
        if _rows_changed(result) != 1:
            raise FailedPrecondition(
                f"job {job_id} changed concurrently; it cannot become {target}"
            )
        return JobStatus(current)

    async def update_job(self, job_id: str, **values) -> None:
        await self.session.execute(
            update(Job).where(Job.id == job_id).values(updated_at=now(), **values)
        )

    async def update_output(self, output_id: str, **values) -> None:
        """Values that are not the status (progress, costs, result)."""
        await self.session.execute(update(Output).where(Output.id == output_id).values(**values))

    async def move_output(self, output_id: str, target: OutputStatus, **values) -> bool:
        """Guarded status change: False when the output was not in an allowed source status."""
        result = await self.session.execute(
            update(Output)
            .where(Output.id == output_id, Output.status.in_(states.output_sources(target)))
            .values(status=str(target), **values)
        )
        return _rows_changed(result) == 1

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
        )
        return list(ids)

    # -- events -------------------------------------------------------------------

    async def append_event(self, job_id: str, build_payload) -> int:
        """Write the job's next event. `build_payload(sequence)` returns its bytes.

        The sequence comes from bumping jobs.last_sequence in this transaction,
        which also locks the job row on Postgres: sequences have no gaps and no
        duplicates however many writers race.
        """
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(last_sequence=Job.last_sequence + 1)
            .returning(Job.last_sequence)
        )
        sequence = result.scalar_one()
        self.session.add(
            JobEvent(
                job_id=job_id, sequence=sequence, payload=build_payload(sequence), created_at=now()
            )
        )
        await self.session.flush()
        return sequence

    async def events_after(
        self, job_id: str, after: int, limit: int = 500
    ) -> list[tuple[int, bytes]]:
        rows = await self.session.execute(
            select(JobEvent.sequence, JobEvent.payload)
            .where(JobEvent.job_id == job_id, JobEvent.sequence > after)
            .order_by(JobEvent.sequence)
            .limit(limit)
        )
        return [(sequence, payload) for sequence, payload in rows.all()]

    async def notify(self, channel: str, payload: str) -> None:
        """Postgres NOTIFY, delivered to listeners when this transaction commits."""
        if self.is_postgres:
            await self.session.execute(select(func.pg_notify(channel, payload)))

    # -- tasks --------------------------------------------------------------------

    async def insert_tasks(self, tasks: Sequence[Task]) -> None:
        self.session.add_all(tasks)
        await self.session.flush()

    async def claim_task(self, worker_id: str, lease_seconds: float) -> Task | None:
        """Lease the most urgent queued task under a fresh, unguessable fencing token.

        Only the task row is touched (SKIP LOCKED on Postgres, so claimers never wait on
        each other). The caller must commit before locking the job: everything else locks
        the job first, then its tasks, and a claim holding a task while waiting for its job
        would deadlock against a Cancel.
        """
        candidate = (
            select(Task.id)
            .where(Task.status.in_(states.task_sources(TaskStatus.LEASED)))
            .order_by(Task.priority.desc(), Task.created_at, Task.id)
            .limit(1)
        )
        if self.is_postgres:
            candidate = candidate.with_for_update(skip_locked=True)
        result = await self.session.execute(
            update(Task)
            .where(
                Task.id == candidate.scalar_subquery(),
                Task.status.in_(states.task_sources(TaskStatus.LEASED)),
            )
            .values(
                status=str(TaskStatus.LEASED),
                worker_id=worker_id,
                attempts=Task.attempts + 1,
                lease_token=new_lease_token(),
                lease_expires_at=now() + timedelta(seconds=lease_seconds),
            )
            .returning(Task.id)
        )
        task_id = result.scalar_one_or_none()
        if task_id is None:
            return None
        return await self.session.get(Task, task_id, populate_existing=True)

    async def task(self, task_id: str) -> Task:
        """A task as it is now, unlocked (to learn its job before locking job, then task)."""
        task = await self.session.get(Task, task_id, populate_existing=True)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        return task

    async def leased_task(self, task_id: str, token: int, *, lock: bool = False) -> Task:
        """The task if `token` is its current lease; StaleLease otherwise."""
        query = select(Task).where(Task.id == task_id).execution_options(populate_existing=True)
        if lock and self.is_postgres:
            query = query.with_for_update()
        task = await self.session.scalar(query)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        if task.lease_token != token:
            raise StaleLease(f"task {task_id}: lease {token} is not the current lease")
        return task

    async def extend_lease(self, task_id: str, token: int, lease_seconds: float) -> bool:
        result = await self.session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.status == str(TaskStatus.LEASED),
                Task.lease_token == token,
            )
            .values(lease_expires_at=now() + timedelta(seconds=lease_seconds))
        )
        return _rows_changed(result) == 1

    async def end_lease(self, task_id: str, token: int, target: TaskStatus) -> bool:
        """Leased task -> DONE (result recorded) or QUEUED (run it again), only under `token`."""
        result = await self.session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.status.in_(states.task_sources(target)),
                Task.lease_token == token,
            )
            .values(status=str(target))
        )
        return _rows_changed(result) == 1

    async def cancel_tasks(self, job_id: str) -> None:
        await self.session.execute(
            update(Task)
            .where(
                Task.job_id == job_id,
                Task.status.in_(states.task_sources(TaskStatus.CANCELED)),
            )
            .values(status=str(TaskStatus.CANCELED))
        )

    async def expired_leases(self) -> list[Task]:
        """Candidates only: each is taken back by `take_back_expired` under its token."""
        return list(
            (
                await self.session.scalars(
                    select(Task).where(
                        Task.status == str(TaskStatus.LEASED), Task.lease_expires_at < now()
                    )
                )
            ).all()
        )

    async def take_back_expired(self, task_id: str, token: int, target: TaskStatus) -> bool:
        """End a lease that is *still* expired under the same token at this very statement.

        A worker that renewed its lease a moment ago (new expiry) or a new claim (new token)
        leaves no row matching, so the reaper never takes a live lease.
        """
        result = await self.session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.status.in_(states.task_sources(target)),
                Task.lease_token == token,
                Task.lease_expires_at < now(),
            )
            .values(status=str(target))
        )
        return _rows_changed(result) == 1

    async def open_task_count(self, job_id: str) -> int:
        return (
            await self.session.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.job_id == job_id, Task.status.in_(["QUEUED", "LEASED"]))
            )
            or 0
        )

    # -- webhooks -----------------------------------------------------------------

    async def insert_delivery(self, delivery: WebhookDelivery) -> None:
        self.session.add(delivery)
        await self.session.flush()

    async def claim_due_deliveries(self, limit: int, hold_seconds: float) -> list[WebhookDelivery]:
        """Due deliveries, pushed `hold_seconds` into the future so no other replica sends them.

        SKIP LOCKED on Postgres lets replicas share the queue without waiting on each other.
        """
        query = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == str(DeliveryStatus.PENDING),
                WebhookDelivery.next_attempt_at <= now(),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        deliveries = list((await self.session.scalars(query)).all())
        hold = now() + timedelta(seconds=hold_seconds)
        for delivery in deliveries:
            delivery.next_attempt_at = hold
        await self.session.flush()
        return deliveries

    async def finish_delivery(
        self,
        delivery_id: str,
        *,
        status: DeliveryStatus,
        attempts: int,
        next_attempt_at: datetime,
        error: str,
    ) -> bool:
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status.in_(states.delivery_sources(status)),
            )
            .values(
                status=str(status),
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_error=error,
            )
        )
        return _rows_changed(result) == 1

    async def deliveries_for(self, job_id: str) -> list[WebhookDelivery]:
        return list(
            (
                await self.session.scalars(
                    select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                )
            ).all()
        )

    # -- presets ------------------------------------------------------------------

    async def insert_preset(self, preset: Preset) -> None:
        self.session.add(preset)
        await self.session.flush()

    async def presets_by_id(self, organization_id: str, preset_ids: Sequence[str]) -> list[Preset]:
        if not preset_ids:
            return []
        return list(
            (
                await self.session.scalars(
                    select(Preset).where(
                        Preset.organization_id == organization_id, Preset.id.in_(preset_ids)
                    )
                )
            ).all()
        )

    async def list_presets(self, organization_id: str, limit: int, offset: int) -> list[Preset]:
        for preset in (
            presets := list(
                (
                    await self.session.scalars(
                        select(Preset)
                        .where(Preset.organization_id == organization_id)
                        .order_by(Preset.created_at, Preset.id)
                        .limit(limit)
                        .offset(offset)
                    )
                ).all()
            )
        ):
            preset.created_at = cast(datetime, _aware(preset.created_at))
        return presets

    async def delete_preset(self, organization_id: str, preset_id: str) -> bool:
        result = await self.session.execute(
            delete(Preset).where(Preset.organization_id == organization_id, Preset.id == preset_id)
        )
        return _rows_changed(result) == 1
