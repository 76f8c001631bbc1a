"""An organization's origins, and which jobs still use one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, exists, or_, select, update

from ..domain.new_records import NewOrigin
from .database import Statements, aware, rows_changed
from .models import Job, Origin, Output


def _aware_times(origin: Origin) -> Origin:
    origin.created_at = cast(datetime, aware(origin.created_at))
    origin.updated_at = cast(datetime, aware(origin.updated_at))
    return origin


class OriginStatements(Statements):
    async def insert_origin(self, new: NewOrigin) -> Origin:
        origin = Origin(
            id=new.id,
            organization_id=new.organization_id,
            name=new.name,
            kind=new.kind,
            use=new.use,
            settings=dict(new.settings),
            sealed_secret=new.sealed_secret,
            secret_fingerprint=new.secret_fingerprint,
            public_base_url=new.public_base_url,
            created_at=new.created_at,
            updated_at=new.created_at,
        )
        self.session.add(origin)
        await self.session.flush()
        return origin

    async def origin_by_id(self, organization_id: str, origin_id: str) -> Origin | None:
        """One of the organization's origins; None also for another organization's."""
        origin = await self.session.scalar(
            select(Origin).where(Origin.organization_id == organization_id, Origin.id == origin_id)
        )
        return None if origin is None else _aware_times(origin)

    async def update_origin(
        self, organization_id: str, origin_id: str, **values: Any
    ) -> Origin | None:
        """Set columns of one of the organization's origins (written at commit); None when
        it has no such origin."""
        origin = await self.origin_by_id(organization_id, origin_id)
        if origin is None:
            return None
        for column, value in values.items():
            setattr(origin, column, value)
        return origin

    async def origins_by_id(self, origin_ids: Sequence[str]) -> list[Origin]:
        """Origins by id whatever their organization: for the server's own use of origins
        a job already names (the job's organization was checked when it was created)."""
        if not origin_ids:
            return []
        rows = await self.session.scalars(select(Origin).where(Origin.id.in_(origin_ids)))
        return [_aware_times(origin) for origin in rows.all()]

    async def list_origins(self, organization_id: str, limit: int, offset: int) -> list[Origin]:
        rows = await self.session.scalars(
            select(Origin)
            .where(Origin.organization_id == organization_id)
            .order_by(Origin.created_at, Origin.id)
            .limit(limit)
            .offset(offset)
        )
        return [_aware_times(origin) for origin in rows.all()]

    async def all_sealed_secrets(self) -> list[tuple[str, str, str]]:
        """(origin id, organization id, sealed secret) of every origin with a secret: the
        startup check and `kiln secrets rotate` open each one."""
        rows = await self.session.execute(
            select(Origin.id, Origin.organization_id, Origin.sealed_secret).where(
                Origin.sealed_secret != ""
            )
        )
        return [(row[0], row[1], row[2]) for row in rows.all()]

    async def reseal_origin_secret(self, origin_id: str, old: str, new: str) -> bool:
        """Replace a sealed secret unless it changed meanwhile (an UpdateOrigin won)."""
        result = await self.session.execute(
            update(Origin)
            .where(Origin.id == origin_id, Origin.sealed_secret == old)
            .values(sealed_secret=new)
        )
        return rows_changed(result) == 1

    async def origin_used_by_open_jobs(self, origin_id: str) -> bool:
        """Whether a job that has not ended reads from the origin or writes to it."""
        on_origin = or_(Output.origin == origin_id, Output.origin.startswith(f"{origin_id}/"))
        open_jobs = Job.completed_at.is_(None)
        reads = select(Job.id).where(Job.input_origin_id == origin_id, open_jobs)
        writes = select(Output.id).join(Job, Job.id == Output.job_id).where(on_origin, open_jobs)
        return bool(await self.session.scalar(select(or_(exists(reads), exists(writes)))))

    async def output_results_on_origin(self, origin_id: str) -> list[bytes]:
        """The recorded results (kiln.worker.v1.TranscodeResult) of outputs on the origin:
        DeleteOrigin refuses while one still lists files."""
        on_origin = or_(Output.origin == origin_id, Output.origin.startswith(f"{origin_id}/"))
        rows = await self.session.scalars(
            select(Output.result).where(on_origin, Output.result.is_not(None))
        )
        return [row for row in rows.all() if row is not None]

    async def delete_origin(self, organization_id: str, origin_id: str) -> bool:
        result = await self.session.execute(
            delete(Origin).where(Origin.organization_id == organization_id, Origin.id == origin_id)
        )
        return rows_changed(result) == 1
