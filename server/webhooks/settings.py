"""The WebhookService use cases: an organization's default URL and its signing secrets."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from kiln.v1 import webhook_service_pb2 as pb

from common.input_policy import InputPolicy, InputRefused

from ..domain.errors import FieldViolation, InvalidArgument
from ..domain.validation import MAX_WEBHOOK_URL
from ..store.store import Store
from ..store.webhook_settings import OrganizationWebhooks

MAX_OVERLAP_SECONDS = 7 * 24 * 3600
HTTP_URL = re.compile(r"^https?://[^/\s?#]+", re.IGNORECASE)


class WebhookSettingsService:
    def __init__(self, store: Store, policy: InputPolicy, *, overlap_seconds: float) -> None:
        self.store = store
        # The same policy as a job's webhook_url: public hosts, or KILN_WEBHOOK_ALLOW_HOSTS.
        self.policy = policy
        self.overlap = timedelta(seconds=overlap_seconds)

    async def get(self, organization_id: str) -> pb.WebhookSettings:
        async with self.store.transaction() as tx:
            return settings_message(
                await tx.webhook_settings.organization_webhooks(organization_id)
            )

    async def update(
        self, organization_id: str, request: pb.UpdateWebhookSettingsRequest
    ) -> pb.WebhookSettings:
        url = request.default_url
        if url:
            await self._check_url(url)
        async with self.store.transaction() as tx:
            await tx.webhook_settings.set_default_webhook_url(organization_id, url)
            return settings_message(
                await tx.webhook_settings.organization_webhooks(organization_id)
            )

    async def rotate(
        self, organization_id: str, request: pb.RotateWebhookSecretRequest
    ) -> pb.RotateWebhookSecretResponse:
        overlap = self.overlap
        if request.HasField("overlap_seconds"):
            if not 0 <= request.overlap_seconds <= MAX_OVERLAP_SECONDS:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "overlap_seconds", f"must be between 0 and {MAX_OVERLAP_SECONDS}"
                        )
                    ]
                )
            overlap = timedelta(seconds=request.overlap_seconds)
        async with self.store.transaction() as tx:
            secret = await tx.webhook_settings.rotate_webhook_secret(organization_id, overlap)
            settings = settings_message(
                await tx.webhook_settings.organization_webhooks(organization_id)
            )
        return pb.RotateWebhookSecretResponse(secret=secret, settings=settings)

    async def _check_url(self, url: str) -> None:
        problem = None
        if len(url) > MAX_WEBHOOK_URL:
            problem = f"at most {MAX_WEBHOOK_URL} characters"
        elif not HTTP_URL.match(url):
            problem = "must be an http:// or https:// URL"
        else:
            try:
                # Resolves the host: off the event loop.
                await asyncio.to_thread(self.policy.check_resolved, url)
            except InputRefused as refused:
                problem = str(refused)
        if problem is not None:
            raise InvalidArgument([FieldViolation("default_url", problem)])


def settings_message(found: OrganizationWebhooks) -> pb.WebhookSettings:
    message = pb.WebhookSettings(default_url=found.default_url)
    for info in found.signing:
        secret = message.signing_secrets.add(id=info.id)
        if info.created_at is not None:
            secret.create_time.FromDatetime(info.created_at)
        if info.expires_at is not None:
            secret.expire_time.FromDatetime(info.expires_at)
    return message
