"""The task queue: claims under fencing tokens, leases, and taking back lost leases.

A lease is held under a random token; every later write names that token, so a worker
whose lease was taken back (or reclaimed by another) changes no row.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, select, update

from ..domain import states
from ..domain.errors import NotFound, StaleLease
from ..domain.new_records import NewTask
from ..domain.states import TaskStatus
from .database import Statements, aware, now, rows_changed
from .models import Task
from .row_encoding import insert_rows, new_row


def new_lease_token() -> int:
    """A fencing token nobody can guess: a worker that lost a lease cannot forge the next."""
    return secrets.randbits(62) + 1


class Claim(NamedTuple):
    task: Task
    # When the task became ready: created, or queued again after a lease ended.
    ready_since: datetime | None


@dataclass(frozen=True)
class QueuedTasks:
    count: int
    # When the longest-waiting of them became ready.
    oldest_ready_since: datetime | None


def _as_moment(value: datetime | str | None) -> datetime | None:
    """A MIN() over timestamps: SQLite hands back its stored text, PostgreSQL a datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return aware(value)


def new_task_row(new: NewTask) -> Task:
    """A new task's row: QUEUED, never leased, nothing done yet; or a piece kept from an
    earlier attempt of its output, DONE with that attempt's result (never leased either)."""
    kept = new.kept
    return new_row(
        Task,
        id=new.id,
        job_id=new.job_id,
        output_id=new.output_id,
        kind=str(new.kind),
        status=str(TaskStatus.QUEUED if kept is None else TaskStatus.DONE),
        priority=new.priority,
        attempts=0,
        lease_token=0,
        worker_id="",
        created_at=new.created_at,
        traceparent=new.traceparent,
        chunk_index=new.chunk_index,
        chunk=new.chunk,
        reuse_key=new.reuse_key,
        reused_from=None if kept is None else kept.task_id,
        result=None if kept is None else kept.result,
        progress=0.0 if kept is None else 100.0,
        finished_at=None if kept is None else new.created_at,
    )


class TaskQueue(Statements):
    async def insert_new_tasks(self, tasks: Sequence[NewTask]) -> list[Task]:
        """New tasks, in one multi-row INSERT; their rows (detached, as built) come back for
        the dispatch to announce."""
        rows = [new_task_row(task) for task in tasks]
        await self.insert_tasks(rows)
        return rows

    async def insert_tasks(self, tasks: Sequence[Task]) -> None:
        """New tasks, in one multi-row INSERT (the objects stay detached, as built)."""
        if tasks:
            statement, rows = insert_rows(tasks)
            await self.session.execute(statement, rows)

    async def claim_task(
        self, worker_id: str, lease_seconds: float, task_id: str = ""
    ) -> Task | None:
        """`claim_ready_task`, the task alone."""
        claim = await self.claim_ready_task(worker_id, lease_seconds, task_id)
        return None if claim is None else claim.task

    async def claim_ready_task(
        self, worker_id: str, lease_seconds: float, task_id: str = ""
    ) -> Claim | None:
        """Lease the most urgent queued task (or exactly `task_id`, for a Pub/Sub delivery)
        under a fresh, unguessable fencing token.

        Only the task row is touched (SKIP LOCKED on Postgres, so claimers never wait on
        each other). The caller must commit before locking the job: everything else locks
        the job first, then its tasks, and a claim holding a task while waiting for its job
        would deadlock against a Cancel. A task that is not QUEUED is not claimed: two
        deliveries of one message lease it once.
        """
        claimable = Task.status.in_(states.task_sources(TaskStatus.LEASED))
        # The candidate is read first for when it became ready (metrics: the wait); on
        # Postgres its row stays locked (SKIP LOCKED) until this transaction ends.
        candidate = select(Task.id, Task.created_at, Task.lease_expires_at).where(claimable)
        if task_id:
            candidate = candidate.where(Task.id == task_id)
        else:
            candidate = candidate.order_by(Task.priority.desc(), Task.created_at, Task.id)
            if self.is_postgres:
                candidate = candidate.with_for_update(skip_locked=True)
        picked = (await self.session.execute(candidate.limit(1))).first()
        if picked is None:
            return None
        result = await self.session.execute(
            update(Task)
            .where(Task.id == picked.id, claimable)
            .values(
                status=str(TaskStatus.LEASED),
                worker_id=worker_id,
                attempts=Task.attempts + 1,
                lease_token=new_lease_token(),
                lease_expires_at=now() + timedelta(seconds=lease_seconds),
            )
            .returning(Task.id)
        )
        leased_id = result.scalar_one_or_none()
        if leased_id is None:
            return None
        task = await self.session.get(Task, leased_id, populate_existing=True)
        if task is None:
            return None
        # A task given back or refused was stamped when it was queued again, an expired
        # lease holds when it expired; a task never leased became ready when created.
        return Claim(task, aware(picked.lease_expires_at or picked.created_at))

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
        return rows_changed(result) == 1

    async def end_lease(self, task_id: str, token: int, target: TaskStatus) -> bool:
        """Leased task -> DONE (result recorded) or QUEUED (run it again), only under `token`."""
        result = await self.session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.status.in_(states.task_sources(target)),
                Task.lease_token == token,
            )
            # A task queued again is stamped with when (what its next claim's wait counts from).
            .values(status=str(target), **_requeue_stamp(target))
        )
        return rows_changed(result) == 1

    async def give_back_lease(self, task_id: str, token: int) -> bool:
        """Leased task -> QUEUED, its attempt not counted: the worker let go unfinished
        (draining), which says nothing about the task."""
        result = await self.session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.status.in_(states.task_sources(TaskStatus.QUEUED)),
                Task.lease_token == token,
            )
            .values(
                status=str(TaskStatus.QUEUED),
                attempts=Task.attempts - 1,
                worker_id="",
                lease_expires_at=now(),
            )
        )
        return rows_changed(result) == 1

    async def give_up_queued(self, task_id: str) -> bool:
        """Queued task -> DONE without running: its dispatch gave up on it."""
        result = await self.session.execute(
            update(Task)
            .where(Task.id == task_id, Task.status.in_(GIVE_UP_SOURCES))
            .values(status=str(TaskStatus.DONE))
        )
        return rows_changed(result) == 1

    async def cancel_tasks(self, job_id: str) -> None:
        await self.session.execute(
            update(Task)
            .where(
                Task.job_id == job_id,
                Task.status.in_(states.task_sources(TaskStatus.CANCELED)),
            )
            .values(status=str(TaskStatus.CANCELED))
        )

    async def finished_pieces(self, job_id: str) -> list[Task]:
        """The job's DONE pieces that have a reuse key and a result, newest first: what a
        retry may keep."""
        return list(
            (
                await self.session.scalars(
                    select(Task)
                    .where(
                        Task.job_id == job_id,
                        Task.status == str(TaskStatus.DONE),
                        Task.reuse_key.is_not(None),
                        Task.result.is_not(None),
                    )
                    .order_by(Task.created_at.desc(), Task.id)
                )
            ).all()
        )

    async def output_tasks(self, output_id: str) -> list[Task]:
        """Every task of one output (a chunked output has several), oldest first."""
        return list(
            (
                await self.session.scalars(
                    select(Task)
                    .where(Task.output_id == output_id)
                    .order_by(Task.created_at, Task.id)
                    .execution_options(populate_existing=True)
                )
            ).all()
        )

    async def set_task_progress(self, task_id: str, token: int, progress: float) -> None:
        await self.session.execute(
            update(Task)
            .where(Task.id == task_id, Task.lease_token == token)
            .values(progress=progress)
        )

    async def record_task_result(self, task_id: str, result: bytes) -> None:
        """What a finished piece of a chunked output produced (the merge is planned from it)."""
        await self.session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(result=result, progress=100.0, finished_at=now())
        )

    async def record_audio_so_far(self, task_id: str, token: int, result: bytes) -> bool:
        """What a running AUDIO piece has stored so far (live playlists list it), under its
        lease; its final result replaces it."""
        outcome = await self.session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.status == str(TaskStatus.LEASED),
                Task.lease_token == token,
            )
            .values(result=result)
        )
        return rows_changed(outcome) == 1

    async def cancel_output_tasks(self, output_id: str) -> list[str]:
        """Cancel the open tasks of one output (a failed chunk ends its siblings); running
        workers learn it from their next heartbeat."""
        result = await self.session.execute(
            update(Task)
            .where(
                Task.output_id == output_id,
                Task.status.in_(states.task_sources(TaskStatus.CANCELED)),
            )
            .values(status=str(TaskStatus.CANCELED))
            .returning(Task.id)
        )
        return list(result.scalars().all())

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
        return rows_changed(result) == 1

    async def queued_by_priority(self) -> dict[int, QueuedTasks]:
        """{priority: how many tasks are QUEUED and since when the oldest has waited}, one
        GROUP BY over the queued tasks (the metrics scrape)."""
        # When a task became ready, as the claim reads it: queued again, or created.
        ready_since = func.min(func.coalesce(Task.lease_expires_at, Task.created_at))
        rows = await self.session.execute(
            select(Task.priority, func.count(), ready_since)
            .where(Task.status == str(TaskStatus.QUEUED))
            .group_by(Task.priority)
        )
        return {
            int(priority): QueuedTasks(int(count), _as_moment(oldest))
            for priority, count, oldest in rows
        }


# Only a task still waiting may be given up on by its dispatch (one of the table's sources of
# DONE; a leased task ends through its worker's report or its lease).
GIVE_UP_SOURCES = [str(TaskStatus.QUEUED)]
assert set(GIVE_UP_SOURCES) <= set(states.task_sources(TaskStatus.DONE))


def _requeue_stamp(target: TaskStatus) -> dict[str, datetime]:
    return {"lease_expires_at": now()} if target == TaskStatus.QUEUED else {}
