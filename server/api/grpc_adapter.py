"""Native gRPC on grpc.aio: the same JobService, the same error boundary."""

from __future__ import annotations

import hmac
import re
from collections import OrderedDict
from collections.abc import AsyncIterator

import grpc
from kiln.v1 import job_service_pb2 as pb
from kiln.v1 import job_service_pb2_grpc, preset_service_pb2_grpc, webhook_service_pb2_grpc
from kiln.v1 import preset_service_pb2 as ppb
from kiln.v1 import webhook_service_pb2 as hpb
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from ..domain.errors import FieldViolation, InvalidArgument, Unauthenticated
from ..jobs.presets import PresetCatalog
from ..jobs.service import JobService
from ..jobs.tasks import TaskService
from ..webhooks.settings import WebhookSettingsService
from .auth import Authenticator, header_reader
from .errors import grpc_internal, grpc_stream, grpc_unary

# "tsk_" + a ULID (26 Crockford base32 characters).
TASK_ID = re.compile(r"tsk_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")


class GrpcJobService(job_service_pb2_grpc.JobServiceServicer):
    service_name = pb.DESCRIPTOR.services_by_name["JobService"].full_name

    def __init__(self, jobs: JobService, auth: Authenticator) -> None:
        self.jobs = jobs
        self.auth = auth

    async def _organization(self, context: grpc.aio.ServicerContext) -> str:
        return await self.auth.organization(header_reader(list(context.invocation_metadata())))

    @grpc_unary
    async def Create(self, request: pb.CreateRequest, context) -> pb.CreateResponse:  # noqa: N802
        organization = await self._organization(context)
        key = header_reader(list(context.invocation_metadata()))("x-idempotency-key") or ""
        return pb.CreateResponse(job=await self.jobs.create(organization, request, key))

    @grpc_unary
    async def Get(self, request: pb.GetRequest, context) -> pb.GetResponse:  # noqa: N802
        organization = await self._organization(context)
        return pb.GetResponse(job=await self.jobs.get(organization, request.id))

    @grpc_unary
    async def List(self, request: pb.ListRequest, context) -> pb.ListResponse:  # noqa: N802
        return await self.jobs.list(await self._organization(context), request)

    @grpc_unary
    async def Cancel(self, request: pb.CancelRequest, context) -> pb.CancelResponse:  # noqa: N802
        organization = await self._organization(context)
        return pb.CancelResponse(job=await self.jobs.cancel(organization, request.id))

    @grpc_unary
    async def Confirm(self, request: pb.ConfirmRequest, context) -> pb.ConfirmResponse:  # noqa: N802
        organization = await self._organization(context)
        return pb.ConfirmResponse(job=await self.jobs.confirm(organization, request.id))

    @grpc_unary
    async def Retry(self, request: pb.RetryRequest, context) -> pb.RetryResponse:  # noqa: N802
        organization = await self._organization(context)
        return pb.RetryResponse(job=await self.jobs.retry(organization, request.id))

    @grpc_unary
    async def DeleteOutputs(  # noqa: N802
        self, request: pb.DeleteOutputsRequest, context
    ) -> pb.DeleteOutputsResponse:
        organization = await self._organization(context)
        job, deleted = await self.jobs.delete_outputs(organization, request.id)
        return pb.DeleteOutputsResponse(job=job, deleted_files=deleted)

    @grpc_stream
    async def Watch(  # noqa: N802
        self, request: pb.WatchRequest, context
    ) -> AsyncIterator[pb.WatchResponse]:
        organization = await self._organization(context)
        async for event in await self.jobs.watch(organization, request):
            yield event


class GrpcPresetService(preset_service_pb2_grpc.PresetServiceServicer):
    service_name = ppb.DESCRIPTOR.services_by_name["PresetService"].full_name

    def __init__(self, presets: PresetCatalog, auth: Authenticator) -> None:
        self.presets = presets
        self.auth = auth

    async def _organization(self, context) -> str:
        return await self.auth.organization(header_reader(list(context.invocation_metadata())))

    @grpc_unary
    async def CreatePreset(self, request, context) -> ppb.CreatePresetResponse:  # noqa: N802
        organization = await self._organization(context)
        return ppb.CreatePresetResponse(
            preset=await self.presets.create(organization, request.preset)
        )

    @grpc_unary
    async def GetPreset(self, request, context) -> ppb.GetPresetResponse:  # noqa: N802
        organization = await self._organization(context)
        return ppb.GetPresetResponse(preset=await self.presets.get(organization, request.id))

    @grpc_unary
    async def ListPresets(self, request, context) -> ppb.ListPresetsResponse:  # noqa: N802
        return await self.presets.list(await self._organization(context), request)

    @grpc_unary
    async def DeletePreset(self, request, context) -> ppb.DeletePresetResponse:  # noqa: N802
        await self.presets.delete(await self._organization(context), request.id)
        return ppb.DeletePresetResponse()


class GrpcWebhookService(webhook_service_pb2_grpc.WebhookServiceServicer):
    service_name = hpb.DESCRIPTOR.services_by_name["WebhookService"].full_name

    def __init__(self, webhooks: WebhookSettingsService, auth: Authenticator) -> None:
        self.webhooks = webhooks
        self.auth = auth

    async def _organization(self, context) -> str:
        return await self.auth.organization(header_reader(list(context.invocation_metadata())))

    @grpc_unary
    async def GetWebhookSettings(self, request, context) -> hpb.GetWebhookSettingsResponse:  # noqa: N802
        organization = await self._organization(context)
        return hpb.GetWebhookSettingsResponse(settings=await self.webhooks.get(organization))

    @grpc_unary
    async def UpdateWebhookSettings(  # noqa: N802
        self, request: hpb.UpdateWebhookSettingsRequest, context
    ) -> hpb.UpdateWebhookSettingsResponse:
        organization = await self._organization(context)
        settings = await self.webhooks.update(organization, request)
        return hpb.UpdateWebhookSettingsResponse(settings=settings)

    @grpc_unary
    async def RotateWebhookSecret(  # noqa: N802
        self, request: hpb.RotateWebhookSecretRequest, context
    ) -> hpb.RotateWebhookSecretResponse:
        return await self.webhooks.rotate(await self._organization(context), request)


class GrpcWorkerService(worker_service_pb2_grpc.WorkerServiceServicer):
    """Internal API for workers, served on its own listener (never the public gRPC port).

    With a worker token configured, every call must present it (compared in constant
    time); without one the listener must be loopback-only (config.check_worker_listener).
    """

    service_name = wpb.DESCRIPTOR.services_by_name["WorkerService"].full_name

    def __init__(self, tasks: TaskService, worker_token: str = "") -> None:
        self.tasks = tasks
        self.expected = f"Bearer {worker_token}" if worker_token else ""

    def _check_token(self, context) -> None:
        if not self.expected:
            return
        presented = header_reader(list(context.invocation_metadata()))("authorization") or ""
        if not hmac.compare_digest(presented.encode(), self.expected.encode()):
            raise Unauthenticated("worker token missing or wrong")

    @grpc_internal
    async def ClaimTask(self, request: wpb.ClaimTaskRequest, context) -> wpb.ClaimTaskResponse:  # noqa: N802
        self._check_token(context)
        if request.task_id and not TASK_ID.fullmatch(request.task_id):
            raise InvalidArgument([FieldViolation("task_id", "not a task id (tsk_ + ULID)")])
        wait = request.wait_seconds if request.wait_seconds > 0 else 20.0
        task = await self.tasks.claim(
            request.worker_id or "anonymous", min(wait, 60.0), request.task_id
        )
        return wpb.ClaimTaskResponse(task=task) if task else wpb.ClaimTaskResponse()

    @grpc_internal
    async def ReportProgress(  # noqa: N802
        self, request: wpb.ReportProgressRequest, context
    ) -> wpb.ReportProgressResponse:
        self._check_token(context)
        canceled = await self.tasks.report_progress(request)
        return wpb.ReportProgressResponse(canceled=canceled)

    @grpc_internal
    async def CompleteTask(  # noqa: N802
        self, request: wpb.CompleteTaskRequest, context
    ) -> wpb.CompleteTaskResponse:
        self._check_token(context)
        await self.tasks.complete_task(request)
        return wpb.CompleteTaskResponse()

    @grpc_internal
    async def ReleaseTask(  # noqa: N802
        self, request: wpb.ReleaseTaskRequest, context
    ) -> wpb.ReleaseTaskResponse:
        self._check_token(context)
        await self.tasks.release(request)
        return wpb.ReleaseTaskResponse()


class SerializeOnce:
    """Watch's response serializer: every stream watching a job is handed the same event
    object by the hub, so it is encoded for the first stream and the bytes reused for the
    rest (10,000 watchers: one encoding, not 10,000).

    Keyed by identity; each entry holds its message, so an id cannot be reused while cached.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._encoded: OrderedDict[int, tuple[pb.WatchResponse, bytes]] = OrderedDict()

    def __call__(self, message: pb.WatchResponse) -> bytes:
        key = id(message)
        hit = self._encoded.get(key)
        if hit is not None and hit[0] is message:
            return hit[1]
        data = message.SerializeToString()
        # Snapshots and heartbeats are built per stream: nothing to share.
        if message.WhichOneof("event") not in ("heartbeat", "snapshot"):
            self._encoded[key] = (message, data)
            if len(self._encoded) > self.size:
                self._encoded.popitem(last=False)
        return data


class _HandlerCapture:
    """Stands in for a server to read the handlers a generated add_…_to_server registers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, _handlers) -> None:
        return None

    def add_registered_method_handlers(self, service: str, handlers) -> None:
        self.service, self.handlers = service, handlers


def add_public_services(
    server: grpc.aio.Server,
    jobs: JobService,
    auth: Authenticator,
    webhooks: WebhookSettingsService | None = None,
) -> None:
    """What clients reach on the public gRPC port: JobService, PresetService, WebhookService."""
    servicer = GrpcJobService(jobs, auth)
    capture = _HandlerCapture()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(servicer, capture)
    capture.handlers["Watch"] = grpc.unary_stream_rpc_method_handler(
        servicer.Watch,
        request_deserializer=pb.WatchRequest.FromString,
        response_serializer=SerializeOnce(),
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(capture.service, capture.handlers),)
    )
    server.add_registered_method_handlers(capture.service, capture.handlers)
    preset_service_pb2_grpc.add_PresetServiceServicer_to_server(
        GrpcPresetService(jobs.presets, auth), server
    )
    if webhooks is not None:
        webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(
            GrpcWebhookService(webhooks, auth), server
        )


def add_worker_service(server: grpc.aio.Server, tasks: TaskService, worker_token: str) -> None:
    """The worker listener: WorkerService only."""
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
        GrpcWorkerService(tasks, worker_token), server
    )
