"""The fleet as workers describe themselves: one row per worker, replaced at each
announcement, and the tasks each one holds now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from ..domain.states import TaskStatus, WorkerState
from .database import Statements, aware, now
from .models import Task, Worker


@dataclass(frozen=True)
class Announcement:
    """What a worker says of itself (WorkerService/AnnounceWorker)."""

    worker_id: str
    host: str
    version: str
    capacity: int
    task_kinds: list[str]
    encoders: list[str]
    state: WorkerState  # ACTIVE or DRAINING: what a worker says of itself
    # {speed class: media seconds per wall second} of its recent encodes (checked).
    speeds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerRecord:
    """A worker as operators see it: its last announcement and its leased tasks now."""

    id: str
    host: str
    version: str
    capacity: int
    task_kinds: list[str]
    encoders: list[str]
    state: str
    started_at: datetime
    last_contact_at: datetime
    running_tasks: int
    speeds: dict[str, float] = field(default_factory=dict)


class WorkerStatements(Statements):
    async def announce(self, announcement: Announcement) -> None:
        """Records the announcement; a worker seen for the first time starts now."""
        moment = now()
        row = await self.session.get(Worker, announcement.worker_id)
        if row is None:
            row = Worker(id=announcement.worker_id, started_at=moment)
            self.session.add(row)
        row.host = announcement.host
        row.version = announcement.version
        row.capacity = announcement.capacity
        row.task_kinds = list(announcement.task_kinds)
        row.encoders = list(announcement.encoders)
        row.state = announcement.state
        row.speeds = dict(announcement.speeds)
        row.last_contact_at = moment

    async def list_workers(self) -> list[WorkerRecord]:
        """Every worker that ever announced itself, most recently heard from first."""
        workers = (
            await self.session.scalars(
                select(Worker).order_by(Worker.last_contact_at.desc(), Worker.id)
            )
        ).all()
        # Slots claim as "{worker id}/{slot}": leased tasks counted per slot, summed per worker.
        running: dict[str, int] = {}
        leased = await self.session.execute(
            select(Task.worker_id, func.count())
            .where(Task.status == str(TaskStatus.LEASED))
            .group_by(Task.worker_id)
        )
        for slot, count in leased.all():
            owner = str(slot).rpartition("/")[0] or str(slot)
            running[owner] = running.get(owner, 0) + int(count)
        return [
            WorkerRecord(
                id=worker.id,
                host=worker.host,
                version=worker.version,
                capacity=worker.capacity,
                task_kinds=list(worker.task_kinds),
                encoders=list(worker.encoders),
                state=worker.state,
                started_at=aware(worker.started_at) or worker.started_at,
                last_contact_at=aware(worker.last_contact_at) or worker.last_contact_at,
                running_tasks=running.get(worker.id, 0),
                speeds=dict(worker.speeds or {}),
            )
            for worker in workers
        ]
