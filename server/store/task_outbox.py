"""The task outbox (KILN_DISPATCH=pubsub): ready tasks waiting to be published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select

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
