"""An organization's saved output presets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import delete, select

from ..domain.new_records import NewPreset
from .database import Statements, aware, rows_changed
from .models import Preset


class PresetStatements(Statements):
    async def insert_preset(self, new: NewPreset) -> Preset:
        preset = Preset(
            id=new.id,
            organization_id=new.organization_id,
            name=new.name,
            description=new.description,
            spec=new.spec,
            created_at=new.created_at,
        )
        self.session.add(preset)
        await self.session.flush()
        return preset

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
            preset.created_at = cast(datetime, aware(preset.created_at))
        return presets

    async def delete_preset(self, organization_id: str, preset_id: str) -> bool:
        result = await self.session.execute(
            delete(Preset).where(Preset.organization_id == organization_id, Preset.id == preset_id)
        )
        return rows_changed(result) == 1
