"""A job's Watch event log: gapless sequences, read back from a sequence on."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update

from .database import Statements, now
from .models import Job, JobEvent


class EventStatements(Statements):
    async def append_event(self, job_id: str, build_payload: Callable[[int], bytes]) -> int:
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
