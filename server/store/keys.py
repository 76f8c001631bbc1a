"""Organizations and their API keys (only a key's hash is stored)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from .database import Statements, now
from .models import ApiKey, Organization

API_KEY_PREFIX = "kiln_sk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeyInfo:
    """A key as `kiln keys list` shows it (never the key itself: only its hash is stored)."""

    id: str
    organization_id: str
    name: str
    created_at: datetime


class KeyStatements(Statements):
    async def ensure_organization(self, organization_id: str, name: str = "") -> None:
        if await self.session.get(Organization, organization_id) is None:
            self.session.add(
                Organization(id=organization_id, name=name or organization_id, created_at=now())
            )
            await self.session.flush()

    async def create_api_key(self, organization_id: str, name: str = "") -> str:
        """Store a new key's hash and return the key itself (shown once)."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(24)
        self.session.add(
            ApiKey(
                id="key_" + secrets.token_hex(8),
                organization_id=organization_id,
                key_hash=hash_key(key),
                name=name,
                created_at=now(),
            )
        )
        await self.session.flush()
        return key

    async def organization_for_key(self, key: str) -> str | None:
        row = await self.session.scalar(
            select(ApiKey.organization_id).where(ApiKey.key_hash == hash_key(key))
        )
        return row

    async def api_key_id(self, key: str) -> str | None:
        return await self.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))

    async def list_api_keys(self, organization_id: str | None = None) -> list[ApiKeyInfo]:
        """Keys of one organization (every organization's when None), oldest first."""
        query = select(ApiKey).order_by(ApiKey.organization_id, ApiKey.created_at, ApiKey.id)
        if organization_id is not None:
            query = query.where(ApiKey.organization_id == organization_id)
        return [
            ApiKeyInfo(key.id, key.organization_id, key.name, key.created_at)
            for key in await self.session.scalars(query)
        ]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Delete a key (its hash goes with it, so it never authenticates again); False when
        no key has this id."""
        result = await self.session.execute(delete(ApiKey).where(ApiKey.id == key_id))
        return bool(getattr(result, "rowcount", 0))

    async def organization_currency(self, organization_id: str) -> str:
        org = await self.session.get(Organization, organization_id)
        return org.currency if org else "USD"
