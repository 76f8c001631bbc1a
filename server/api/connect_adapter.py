"""Connect (JSON and binary) and gRPC-web: each RPC translates and calls the use cases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from connectrpc.request import RequestContext
from kiln.v1 import job_service_pb2 as pb
from kiln.v1 import preset_service_pb2 as ppb
from kiln.v1 import webhook_service_pb2 as wpb
from kiln.v1.job_service_connect import JobServiceASGIApplication
from kiln.v1.preset_service_connect import PresetServiceASGIApplication
from kiln.v1.webhook_service_connect import WebhookServiceASGIApplication

from ..jobs.presets import PresetCatalog
from ..jobs.service import JobService
from ..webhooks.settings import WebhookSettingsService
from .auth import Authenticator
from .errors import connect_stream, connect_unary
from .json_codec import connect_codecs


class ConnectJobService:
    def __init__(self, jobs: JobService, auth: Authenticator) -> None:
        self.jobs = jobs
        self.auth = auth

    async def _organization(self, ctx: RequestContext) -> str:
        return await self.auth.organization(ctx.request_headers.get)

    @connect_unary
    async def create(self, request: pb.CreateRequest, ctx: RequestContext) -> pb.CreateResponse:
        organization = await self._organization(ctx)
        key = ctx.request_headers.get("x-idempotency-key") or ""
        return pb.CreateResponse(job=await self.jobs.create(organization, request, key))

    @connect_unary
    async def get(self, request: pb.GetRequest, ctx: RequestContext) -> pb.GetResponse:
        organization = await self._organization(ctx)
        return pb.GetResponse(job=await self.jobs.get(organization, request.id))

    @connect_unary
    async def list(self, request: pb.ListRequest, ctx: RequestContext) -> pb.ListResponse:
        return await self.jobs.list(await self._organization(ctx), request)

    @connect_unary
    async def cancel(self, request: pb.CancelRequest, ctx: RequestContext) -> pb.CancelResponse:
        organization = await self._organization(ctx)
        return pb.CancelResponse(job=await self.jobs.cancel(organization, request.id))

    @connect_unary
    async def confirm(self, request: pb.ConfirmRequest, ctx: RequestContext) -> pb.ConfirmResponse:
        organization = await self._organization(ctx)
        return pb.ConfirmResponse(job=await self.jobs.confirm(organization, request.id))

    @connect_unary
    async def retry(self, request: pb.RetryRequest, ctx: RequestContext) -> pb.RetryResponse:
        organization = await self._organization(ctx)
        return pb.RetryResponse(job=await self.jobs.retry(organization, request.id))

    @connect_unary
    async def delete_outputs(
        self, request: pb.DeleteOutputsRequest, ctx: RequestContext
    ) -> pb.DeleteOutputsResponse:
        organization = await self._organization(ctx)
        job, deleted = await self.jobs.delete_outputs(organization, request.id)
        return pb.DeleteOutputsResponse(job=job, deleted_files=deleted)

    @connect_stream
    async def watch(
        self, request: pb.WatchRequest, ctx: RequestContext
    ) -> AsyncIterator[pb.WatchResponse]:
        organization = await self._organization(ctx)
        async for event in await self.jobs.watch(organization, request):
            yield event


class ConnectPresetService:
    def __init__(self, presets: PresetCatalog, auth: Authenticator) -> None:
        self.presets = presets
        self.auth = auth

    async def _organization(self, ctx: RequestContext) -> str:
        return await self.auth.organization(ctx.request_headers.get)

    @connect_unary
    async def create_preset(
        self, request: ppb.CreatePresetRequest, ctx: RequestContext
    ) -> ppb.CreatePresetResponse:
        organization = await self._organization(ctx)
        return ppb.CreatePresetResponse(
            preset=await self.presets.create(organization, request.preset)
        )

    @connect_unary
    async def get_preset(
        self, request: ppb.GetPresetRequest, ctx: RequestContext
    ) -> ppb.GetPresetResponse:
        organization = await self._organization(ctx)
        return ppb.GetPresetResponse(preset=await self.presets.get(organization, request.id))

    @connect_unary
    async def list_presets(
        self, request: ppb.ListPresetsRequest, ctx: RequestContext
    ) -> ppb.ListPresetsResponse:
        return await self.presets.list(await self._organization(ctx), request)

    @connect_unary
    async def delete_preset(
        self, request: ppb.DeletePresetRequest, ctx: RequestContext
    ) -> ppb.DeletePresetResponse:
        await self.presets.delete(await self._organization(ctx), request.id)
        return ppb.DeletePresetResponse()


class ConnectWebhookService:
    def __init__(self, webhooks: WebhookSettingsService, auth: Authenticator) -> None:
        self.webhooks = webhooks
        self.auth = auth

    async def _organization(self, ctx: RequestContext) -> str:
        return await self.auth.organization(ctx.request_headers.get)

    @connect_unary
    async def get_webhook_settings(
        self, request: wpb.GetWebhookSettingsRequest, ctx: RequestContext
    ) -> wpb.GetWebhookSettingsResponse:
        organization = await self._organization(ctx)
        return wpb.GetWebhookSettingsResponse(settings=await self.webhooks.get(organization))

    @connect_unary
    async def update_webhook_settings(
        self, request: wpb.UpdateWebhookSettingsRequest, ctx: RequestContext
    ) -> wpb.UpdateWebhookSettingsResponse:
        organization = await self._organization(ctx)
        settings = await self.webhooks.update(organization, request)
        return wpb.UpdateWebhookSettingsResponse(settings=settings)

    @connect_unary
    async def rotate_webhook_secret(
        self, request: wpb.RotateWebhookSecretRequest, ctx: RequestContext
    ) -> wpb.RotateWebhookSecretResponse:
        return await self.webhooks.rotate(await self._organization(ctx), request)


def connect_apps(
    jobs: JobService,
    auth: Authenticator,
    interceptors: Sequence = (),
    webhooks: WebhookSettingsService | None = None,
) -> list:
    # The error-boundary decorators (errors.connect_unary) erase the handlers' signatures,
    # so the generated service protocols cannot be checked against these classes.
    job_service: Any = ConnectJobService(jobs, auth)
    preset_service: Any = ConnectPresetService(jobs.presets, auth)
    # JSON bodies are parsed strictly and take short enum names (json_codec); the
    # generated default would drop unknown fields and enum values without a word.
    codecs = connect_codecs()
    apps = [
        JobServiceASGIApplication(job_service, interceptors=interceptors, codecs=codecs),
        PresetServiceASGIApplication(preset_service, interceptors=interceptors, codecs=codecs),
    ]
    if webhooks is not None:
        webhook_service: Any = ConnectWebhookService(webhooks, auth)
        apps.append(
            WebhookServiceASGIApplication(webhook_service, interceptors=interceptors, codecs=codecs)
        )
    return apps
