"""The queue as the ETA sees it: the work running and waiting, in the order it will run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, select

from ..domain.states import TaskKind, TaskStatus
from .database import Statements, aware
from .models import Job, Output, Task

# Kinds that take a slot for as long as their media takes (a probe or a merge is short).
ENCODING_KINDS = (TaskKind.TRANSCODE, TaskKind.CHUNK, TaskKind.AUDIO)


@dataclass(frozen=True)
class QueuedWork:
    """One encoding task, leased or queued, with what its duration is told from."""

    task_id: str
    job_id: str
    output_id: str
    kind: str
    leased: bool
    # 0-100 of a running piece (CHUNK, AUDIO); a TRANSCODE's is its output's.
    task_progress: float
    chunk: bytes | None
    spec: bytes
    input_info: bytes | None
    output_progress: float
    running_since: datetime | None


class QueueOutlook(Statements):
    async def work(self, limit: int) -> list[QueuedWork]:
        """Running tasks first, then queued ones in the order workers claim them (the
        claim's own order: priority, then age), at most `limit` in all."""
        running_first = case((Task.status == str(TaskStatus.LEASED), 0), else_=1)
        rows = await self.session.execute(
            select(
                Task.id,
                Task.job_id,
                Task.output_id,
                Task.kind,
                Task.status,
                Task.progress,
                Task.chunk,
                Output.spec,
                Job.input_info,
                Output.progress,
                Output.running_since,
            )
            .join(Output, Output.id == Task.output_id)
            .join(Job, Job.id == Task.job_id)
            .where(
                Task.status.in_([str(TaskStatus.QUEUED), str(TaskStatus.LEASED)]),
                Task.kind.in_([str(kind) for kind in ENCODING_KINDS]),
            )
            .order_by(running_first, Task.priority.desc(), Task.created_at, Task.id)
            .limit(limit)
        )
        return [
            QueuedWork(
                task_id=row[0],
                job_id=row[1],
                output_id=row[2] or "",
                kind=row[3],
                leased=row[4] == TaskStatus.LEASED,
                task_progress=row[5] or 0.0,
                chunk=row[6],
                spec=row[7],
                input_info=row[8],
                output_progress=row[9] or 0.0,
                running_since=aware(row[10]),
            )
            for row in rows.all()
        ]
