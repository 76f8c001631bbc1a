"""Content keys of encrypted outputs: sealed keys per output and attempt (generation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from .database import Statements, rows_changed
from .models import ContentKey, Output


@dataclass(frozen=True)
class SealedContentKey:
    """A key as stored: its id in hex, where it starts, and the keyring's sealed token."""

    key_id: str
    first_segment: int
    sealed_key: str


class ContentKeyStatements(Statements):
    async def keys_of(self, output_id: str, generation: int) -> list[SealedContentKey]:
        """The output's keys for one attempt, in order of use (none yet: empty)."""
        rows = await self.session.execute(
            select(ContentKey.key_id, ContentKey.first_segment, ContentKey.sealed_key)
            .where(ContentKey.output_id == output_id, ContentKey.generation == generation)
            .order_by(ContentKey.first_segment)
        )
        return [SealedContentKey(*row) for row in rows]

    async def replace_keys(
        self,
        output_id: str,
        generation: int,
        keys: Sequence[SealedContentKey],
        created_at: datetime,
    ) -> None:
        """Make `keys` the output's keys: those of earlier attempts go (their segments were
        or will be overwritten), and the output's public key ids follow."""
        await self.session.execute(delete(ContentKey).where(ContentKey.output_id == output_id))
        self.session.add_all(
            ContentKey(
                output_id=output_id,
                generation=generation,
                key_id=key.key_id,
                first_segment=key.first_segment,
                sealed_key=key.sealed_key,
                created_at=created_at,
            )
            for key in keys
        )
        output = await self.session.get(Output, output_id)
        if output is not None:
            output.content_key_ids = [key.key_id for key in keys]
        await self.session.flush()

    async def delete_keys_of(self, output_ids: Sequence[str]) -> int:
        """Delete every key of these outputs, whatever the attempt; answers how many went."""
        if not output_ids:
            return 0
        return rows_changed(
            await self.session.execute(
                delete(ContentKey).where(ContentKey.output_id.in_(list(output_ids)))
            )
        )

    async def sealed_key(
        self, job_id: str, output_id: str, generation: int, key_id: str
    ) -> str | None:
        """One key of one attempt of a job's output, or None (no such key, output or job)."""
        return await self.session.scalar(
            select(ContentKey.sealed_key)
            .join(Output, Output.id == ContentKey.output_id)
            .where(
                Output.job_id == job_id,
                ContentKey.output_id == output_id,
                ContentKey.generation == generation,
                ContentKey.key_id == key_id,
            )
        )
