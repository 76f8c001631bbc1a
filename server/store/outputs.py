"""Outputs: where their files are stored, their values, and guarded status changes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from ..domain import states
from ..domain.states import OutputStatus
from .database import KEEP_HELD_ROWS_CURRENT, Statements, rows_changed
from .models import Job, Output


class OutputStatements(Statements):
    async def output_origin(self, job_id: str, output_id: str) -> str | None:
        """Where an output's files are stored (its own origin, else the job's output
        origin), or None when no such output of that job exists (a playback request for a
        forged or deleted id)."""
        row = (
            await self.session.execute(
                select(Output.origin, Job.output_origin)
                .join(Output, Output.job_id == Job.id)
                .where(Job.id == job_id, Output.id == output_id)
            )
        ).first()
        return None if row is None else (row[0] or row[1])

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

    async def live_copies_due(self, moment: datetime, limit: int) -> list[tuple[str, str]]:
        """(job id, output id) of the outputs whose live copies are due for removal at
        `moment`, those due longest first, at most `limit`. Only COMPLETED outputs: the time
        is set as their job ends, and a COMPLETED output is final whatever its job does next
        (a Retry of a PARTIAL job runs its other outputs again, never this one)."""
        rows = await self.session.execute(
            select(Output.job_id, Output.id)
            .where(
                Output.live_copies_due_at <= moment,
                Output.status == str(OutputStatus.COMPLETED),
            )
            .order_by(Output.live_copies_due_at, Output.id)
            .limit(limit)
        )
        return [(job_id, output_id) for job_id, output_id in rows.all()]

    async def live_copies_removed(self, output_id: str) -> None:
        """The output's live copies are gone: it is due for nothing any more."""
        await self.update_output(output_id, live_copies_due_at=None)
