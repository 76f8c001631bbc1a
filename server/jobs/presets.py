"""Preset use cases: saved output specs of an organization, and the read-only system ones."""

from __future__ import annotations

import base64

from kiln.v1 import job_pb2, preset_service_pb2

from ..domain import ids, validation
from ..domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ..domain.new_records import NewPreset
from ..domain.presets import SYSTEM_PRESETS
from ..store.models import Preset
from ..store.store import Store, now
from .paging import page_limit, page_size_violation
from .views import timestamp

DEFAULT_PAGE_SIZE = 50


def system_preset_message(slug: str) -> preset_service_pb2.Preset:
    system = SYSTEM_PRESETS[slug]
    return preset_service_pb2.Preset(
        id=slug, name=system.name, description=system.description, spec=system.spec, system=True
    )


def saved_preset_message(preset: Preset) -> preset_service_pb2.Preset:
    message = preset_service_pb2.Preset(
        id=preset.id,
        name=preset.name,
        description=preset.description,
        spec=job_pb2.OutputSpec.FromString(preset.spec),
    )
    if (created := timestamp(preset.created_at)) is not None:
        message.create_time.CopyFrom(created)
    return message


class PresetCatalog:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self, organization_id: str, preset: preset_service_pb2.Preset
    ) -> preset_service_pb2.Preset:
        validation.validate_preset(
            preset.name, preset.description, preset.spec, preset.HasField("spec")
        )
        new = NewPreset(
            id=ids.new_id("pst"),
            organization_id=organization_id,
            name=preset.name.strip(),
            description=preset.description,
            spec=preset.spec.SerializeToString(),
            created_at=now(),
        )
        async with self.store.transaction() as tx:
            row = await tx.presets.insert_preset(new)
        return saved_preset_message(row)

    async def get(self, organization_id: str, preset_id: str) -> preset_service_pb2.Preset:
        if preset_id in SYSTEM_PRESETS:
            return system_preset_message(preset_id)
        async with self.store.transaction() as tx:
            found = await tx.presets.presets_by_id(organization_id, [preset_id])
        if not found:
            raise NotFound(f"preset {preset_id!r} not found")
        return saved_preset_message(found[0])

    async def saved_specs(
        self, organization_id: str, preset_ids: list[str]
    ) -> dict[str, job_pb2.OutputSpec]:
        """The organization's saved presets among `preset_ids`, by id (unknown ones left out)."""
        wanted = [pid for pid in preset_ids if pid.startswith("pst_")]
        if not wanted:
            return {}  # system presets only: nothing to read
        async with self.store.transaction() as tx:
            rows = await tx.presets.presets_by_id(organization_id, wanted)
        return {row.id: job_pb2.OutputSpec.FromString(row.spec) for row in rows}

    async def list(
        self, organization_id: str, request: preset_service_pb2.ListPresetsRequest
    ) -> preset_service_pb2.ListPresetsResponse:
        """System presets first, then the organization's own, oldest first."""
        if (bad_size := page_size_violation(request.page_size, DEFAULT_PAGE_SIZE)) is not None:
            raise InvalidArgument([bad_size])
        start = _decode_offset(request.page_token) if request.page_token else 0
        if start is None:
            raise InvalidArgument(
                [FieldViolation("page_token", "is not a token this server issued")]
            )
        limit = page_limit(request.page_size, DEFAULT_PAGE_SIZE)
        slugs = list(SYSTEM_PRESETS)
        presets = [system_preset_message(slug) for slug in slugs[start : start + limit]]
        saved_offset = max(start - len(slugs), 0)
        remaining = limit - len(presets)
        async with self.store.transaction() as tx:
            rows = await tx.presets.list_presets(organization_id, remaining + 1, saved_offset)
        presets += [saved_preset_message(row) for row in rows[:remaining]]
        response = preset_service_pb2.ListPresetsResponse(presets=presets)
        if start + limit < len(slugs) or len(rows) > remaining:
            response.next_page_token = _encode_offset(start + limit)
        return response

    async def delete(self, organization_id: str, preset_id: str) -> None:
        if preset_id in SYSTEM_PRESETS:
            raise FailedPrecondition(f"{preset_id!r} is a system preset; they are read-only")
        async with self.store.transaction() as tx:
            if not await tx.presets.delete_preset(organization_id, preset_id):
                raise NotFound(f"preset {preset_id!r} not found")


def _encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"presets:{offset}".encode()).decode()


def _decode_offset(token: str) -> int | None:
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return int(number) if kind == "presets" and number.isdigit() else None
