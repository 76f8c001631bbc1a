"""The task outbox (KILN_DISPATCH=pubsub): ready tasks waiting to be published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, delete, func, insert, literal, select

from ..domain import states
from ..domain.states import TaskStatus
from .database import Statements
from .models import Task, TaskOutbox


@dataclass(frozen=True)
class OutboxEntry:
    task_id: str
    job_id: str
    priority: int
    traceparent: str
    row_id: int = 0


class TaskOutboxQueries(Statements):
    """Statements on the outbox (`tx.task_outbox`)."""

    async def add_to_outbox(self, tasks: Sequence[Task], traceparent: str = "") -> None:
        """In the transaction that made the tasks ready: published only if it commits. Each
        row carries its task's trace (or `traceparent` for a task that has none)."""
        moment = datetime.now(UTC)
        self.session.add_all(
            TaskOutbox(
                task_id=task.id,
                job_id=task.job_id,
                priority=task.priority,
                traceparent=task.traceparent or traceparent,
                created_at=moment,
            )
            for task in tasks
        )
        await self.session.flush()

    async def republish_claimable(self) -> int:
        """An outbox row for every task a worker could claim now: for a broker that lost its
        messages (a restarted emulator keeps nothing). Duplicates of messages the broker
        still holds are harmless: the claim is by task id. Returns the number of rows."""
        claimable = select(
            Task.id,
            Task.job_id,
            Task.priority,
            func.coalesce(Task.traceparent, ""),
            literal(datetime.now(UTC), DateTime(timezone=True)),
        ).where(Task.status.in_(states.task_sources(TaskStatus.LEASED)))
        result = await self.session.execute(
            insert(TaskOutbox)
            .from_select(["task_id", "job_id", "priority", "traceparent", "created_at"], claimable)
            .returning(TaskOutbox.id)
        )
        return len(result.all())

    async def take_from_outbox(self, limit: int) -> list[OutboxEntry]:
        """Deletes and returns the oldest rows; they are gone only if this transaction
        commits, which the caller does after the broker took them. Rows another replica is
        publishing are skipped (Postgres), never waited for."""
        oldest = select(TaskOutbox.id).order_by(TaskOutbox.id).limit(limit)
        if self.is_postgres:
            oldest = oldest.with_for_update(skip_locked=True)
        result = await self.session.execute(
            delete(TaskOutbox)
            .where(TaskOutbox.id.in_(oldest.scalar_subquery()))
            .returning(
                TaskOutbox.task_id, TaskOutbox.job_id, TaskOutbox.priority, TaskOutbox.traceparent
            )
        )
        return [OutboxEntry(*row) for row in result]

    async def peek_outbox(self, limit: int) -> list[OutboxEntry]:
        """The oldest rows, left in place (SQLite: see PubSubDispatch._publish_batch_unlocked)."""
        result = await self.session.execute(
            select(
                TaskOutbox.task_id,
                TaskOutbox.job_id,
                TaskOutbox.priority,
                TaskOutbox.traceparent,
                TaskOutbox.id,
            )
            .order_by(TaskOutbox.id)
            .limit(limit)
        )
        return [OutboxEntry(*row) for row in result]

    async def forget_outbox(self, entries: Sequence[OutboxEntry]) -> None:
        """Deletes rows peek_outbox returned, once the broker took them."""
        ids = [entry.row_id for entry in entries]
        await self.session.execute(delete(TaskOutbox).where(TaskOutbox.id.in_(ids)))

    async def outbox_size(self) -> int:
        return (await self.session.execute(select(func.count(TaskOutbox.id)))).scalar_one()
