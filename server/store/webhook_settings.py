"""An organization's webhook settings: the default URL and the secrets that sign deliveries."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from .database import Statements, aware, now
from .models import Organization, WebhookSecret, WebhookSettings

SECRET_ID_PREFIX = "whk_"
# The id GetWebhookSettings shows for the server-wide secret (KILN_WEBHOOK_SECRET).
SERVER_SECRET_ID = "server"


@dataclass(frozen=True)
class SecretInfo:
    """A signing secret as the API shows it: never the secret itself."""

    id: str
    created_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True)
class OrganizationWebhooks:
    default_url: str
    # Newest first; the server-wide secret alone when the organization never rotated.
    signing: list[SecretInfo]


class WebhookSettingsStatements(Statements):
    async def default_webhook_url(self, organization_id: str) -> str:
        url = await self.session.scalar(
            select(WebhookSettings.default_url).where(
                WebhookSettings.organization_id == organization_id
            )
        )
        return url or ""

    async def set_default_webhook_url(self, organization_id: str, url: str) -> None:
        row = await self.session.get(WebhookSettings, organization_id)
        if row is None:
            self.session.add(
                WebhookSettings(organization_id=organization_id, default_url=url, updated_at=now())
            )
        else:
            row.default_url = url
            row.updated_at = now()
        await self.session.flush()

    async def organization_webhooks(self, organization_id: str) -> OrganizationWebhooks:
        rows = await self._live_secrets(organization_id, now())
        signing = [
            SecretInfo(
                SERVER_SECRET_ID if row.secret is None else row.id,
                None if row.secret is None else aware(row.created_at),
                aware(row.expires_at),
            )
            for row in rows
        ] or [SecretInfo(SERVER_SECRET_ID, None, None)]
        return OrganizationWebhooks(await self.default_webhook_url(organization_id), signing)

    async def signing_secrets(self, organization_id: str, at: datetime) -> list[str | None]:
        """The secrets that sign a delivery sent at `at`, newest first; None stands for the
        server-wide secret (also what an organization that never rotated gets)."""
        return [row.secret for row in await self._live_secrets(organization_id, at)] or [None]

    async def rotate_webhook_secret(self, organization_id: str, overlap: timedelta) -> str:
        """A new current secret; those signing until now sign on until `overlap` has passed
        (or until they were to stop anyway, if sooner).

        The organization's row is locked first, so two rotations at once make one current
        secret each in turn, never two current secrets.
        """
        locked = select(Organization.id).where(Organization.id == organization_id)
        if self.is_postgres:
            locked = locked.with_for_update()
        await self.session.scalar(locked)
        moment = now()
        until = moment + overlap
        current = list(
            await self.session.scalars(
                select(WebhookSecret).where(
                    WebhookSecret.organization_id == organization_id,
                    WebhookSecret.expires_at.is_(None),
                )
            )
        )
        if not current and overlap > timedelta(0):
            # The first rotation: the server-wide secret, signing until now, overlaps too.
            self.session.add(
                WebhookSecret(
                    id=SECRET_ID_PREFIX + secrets.token_hex(8),
                    organization_id=organization_id,
                    secret=None,
                    created_at=moment,
                    expires_at=until,
                )
            )
        # Every secret signing now stops at the overlap's end at the latest: a rotation with
        # a short overlap (a leaked secret) retires the older ones as well.
        await self.session.execute(
            update(WebhookSecret)
            .where(
                WebhookSecret.organization_id == organization_id,
                or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > until),
            )
            .values(expires_at=until)
        )
        # Secrets past their overlap sign nothing any more: forget them.
        await self.session.execute(
            delete(WebhookSecret).where(
                WebhookSecret.organization_id == organization_id,
                WebhookSecret.expires_at <= moment,
            )
        )
        secret = new_webhook_secret()
        self.session.add(
            WebhookSecret(
                id=SECRET_ID_PREFIX + secrets.token_hex(8),
                organization_id=organization_id,
                secret=secret,
                created_at=moment,
                expires_at=None,
            )
        )
        await self.session.flush()
        return secret

    async def _live_secrets(self, organization_id: str, at: datetime) -> list[WebhookSecret]:
        query = (
            select(WebhookSecret)
            .where(
                WebhookSecret.organization_id == organization_id,
                or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > at),
            )
            # The current secret (no expiry) first, then the newest; the server-wide one last.
            .order_by(
                WebhookSecret.expires_at.is_not(None),
                WebhookSecret.secret.is_(None),
                WebhookSecret.created_at.desc(),
            )
        )
        return list(await self.session.scalars(query))


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: "whsec_" + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
