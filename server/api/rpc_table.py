"""Every RPC the server answers, written once; both adapters are built from these tables.

An entry names the proto method, its message types, whether the server streams, whether
the call needs the caller's organization and which request headers it reads. Its call
turns the request into one use case call, and the result into the response. The
organization and the headers reach the call as a `Caller`, made by the error boundary
(errors.py) before the call runs: no call reads transport metadata, and none can forget
to authenticate.

connect_adapter mounts these tables on the generated Connect applications and
grpc_adapter on grpc.aio; a method of a service descriptor with no entry fails
tests/unit/test_rpc_table.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from kiln.v1 import job_service_pb2 as pb
from kiln.v1 import origin_service_pb2 as opb
from kiln.v1 import preset_service_pb2 as ppb
from kiln.v1 import webhook_service_pb2 as hpb
from kiln.worker.v1 import worker_service_pb2 as wpb

from ..domain.errors import FieldViolation, InvalidArgument
from ..jobs.presets import PresetCatalog
from ..jobs.service import JobService
from ..jobs.tasks import TaskService
from ..origins.catalog import OriginCatalog
from ..webhooks.settings import WebhookSettingsService

# The use case object a service's calls are made on, and a call's message types.
U = TypeVar("U")
Req = TypeVar("Req", bound=Message)
Res = TypeVar("Res", bound=Message)

# Create's key may come as this header instead of the request field (the field wins).
IDEMPOTENCY_KEY = "x-idempotency-key"


@dataclass(frozen=True)
class Caller:
    """What a call knows of the request beside its message."""

    organization: str  # "" for an RPC whose entry asks for none
    headers: Mapping[str, str]  # the headers its entry names (lower case), "" when absent


@dataclass(frozen=True)
class Rpc(Generic[U]):
    name: str  # the proto method: "DeleteOutputs"
    request: type[Message]
    response: type[Message]
    # Unary: awaited, the response. Streaming: awaited, an iterator of responses, so a
    # Watch is not wrapped in one more generator per stream.
    call: Callable[[U, Caller, Any], Awaitable[Any]]
    stream: bool = False
    organization: bool = True
    headers: tuple[str, ...] = ()
    # The use case hands the same response object to many streams (the hub's events to
    # every Watch of a job): gRPC encodes each once for all of them (SerializeOnce).
    shared_responses: bool = False


def unary(
    name: str,
    request: type[Req],
    response: type[Res],
    call: Callable[[U, Caller, Req], Awaitable[Res]],
    *,
    organization: bool = True,
    headers: tuple[str, ...] = (),
) -> Rpc[U]:
    """An entry whose call mypy checks against its message types."""
    return Rpc(name, request, response, call, organization=organization, headers=headers)


def internal(
    name: str,
    request: type[Req],
    response: type[Res],
    call: Callable[[U, Caller, Req], Awaitable[Res]],
) -> Rpc[U]:
    """An entry of the WorkerService: a task belongs to an organization already, and the
    worker token, not an API key, says who may call (errors.grpc_internal)."""
    return unary(name, request, response, call, organization=False)


def server_stream(
    name: str,
    request: type[Req],
    response: type[Res],
    call: Callable[[U, Caller, Req], Awaitable[AsyncIterator[Res]]],
    *,
    shared_responses: bool = False,
) -> Rpc[U]:
    return Rpc(name, request, response, call, stream=True, shared_responses=shared_responses)


@dataclass(frozen=True)
class Service(Generic[U]):
    descriptor: ServiceDescriptor
    rpcs: tuple[Rpc[U], ...]

    def method_path(self, rpc: Rpc[U]) -> str:
        """How logs name the RPC ("kiln.v1.JobService/Create"), whichever protocol came."""
        return f"{self.descriptor.full_name}/{rpc.name}"


# JobService


async def _create(jobs: JobService, caller: Caller, request: pb.CreateRequest) -> pb.CreateResponse:
    key = caller.headers[IDEMPOTENCY_KEY]
    return pb.CreateResponse(job=await jobs.create(caller.organization, request, key))


async def _get(jobs: JobService, caller: Caller, request: pb.GetRequest) -> pb.GetResponse:
    return pb.GetResponse(job=await jobs.get(caller.organization, request.id))


async def _list(jobs: JobService, caller: Caller, request: pb.ListRequest) -> pb.ListResponse:
    return await jobs.list(caller.organization, request)


async def _confirm(
    jobs: JobService, caller: Caller, request: pb.ConfirmRequest
) -> pb.ConfirmResponse:
    return pb.ConfirmResponse(job=await jobs.confirm(caller.organization, request.id))


async def _cancel(jobs: JobService, caller: Caller, request: pb.CancelRequest) -> pb.CancelResponse:
    return pb.CancelResponse(job=await jobs.cancel(caller.organization, request.id))


async def _retry(jobs: JobService, caller: Caller, request: pb.RetryRequest) -> pb.RetryResponse:
    return pb.RetryResponse(job=await jobs.retry(caller.organization, request.id))


async def _delete_outputs(
    jobs: JobService, caller: Caller, request: pb.DeleteOutputsRequest
) -> pb.DeleteOutputsResponse:
    job, deleted = await jobs.delete_outputs(caller.organization, request.id)
    return pb.DeleteOutputsResponse(job=job, deleted_files=deleted)


async def _plan_job(
    jobs: JobService, caller: Caller, request: pb.PlanJobRequest
) -> pb.PlanJobResponse:
    return await jobs.plan(caller.organization, request)


async def _create_playback_grant(
    jobs: JobService, caller: Caller, request: pb.CreatePlaybackGrantRequest
) -> pb.CreatePlaybackGrantResponse:
    return await jobs.create_playback_grant(caller.organization, request)


def _watch(
    jobs: JobService, caller: Caller, request: pb.WatchRequest
) -> Awaitable[AsyncIterator[pb.WatchResponse]]:
    return jobs.watch(caller.organization, request)


JOB_SERVICE: Service[JobService] = Service(
    pb.DESCRIPTOR.services_by_name["JobService"],
    (
        unary("Create", pb.CreateRequest, pb.CreateResponse, _create, headers=(IDEMPOTENCY_KEY,)),
        unary("Get", pb.GetRequest, pb.GetResponse, _get),
        unary("List", pb.ListRequest, pb.ListResponse, _list),
        unary("Confirm", pb.ConfirmRequest, pb.ConfirmResponse, _confirm),
        unary("Cancel", pb.CancelRequest, pb.CancelResponse, _cancel),
        unary("Retry", pb.RetryRequest, pb.RetryResponse, _retry),
        unary("DeleteOutputs", pb.DeleteOutputsRequest, pb.DeleteOutputsResponse, _delete_outputs),
        server_stream("Watch", pb.WatchRequest, pb.WatchResponse, _watch, shared_responses=True),
        unary("PlanJob", pb.PlanJobRequest, pb.PlanJobResponse, _plan_job),
        unary(
            "CreatePlaybackGrant",
            pb.CreatePlaybackGrantRequest,
            pb.CreatePlaybackGrantResponse,
            _create_playback_grant,
        ),
    ),
)


# PresetService


async def _create_preset(
    presets: PresetCatalog, caller: Caller, request: ppb.CreatePresetRequest
) -> ppb.CreatePresetResponse:
    return ppb.CreatePresetResponse(
        preset=await presets.create(caller.organization, request.preset)
    )


async def _get_preset(
    presets: PresetCatalog, caller: Caller, request: ppb.GetPresetRequest
) -> ppb.GetPresetResponse:
    return ppb.GetPresetResponse(preset=await presets.get(caller.organization, request.id))


async def _list_presets(
    presets: PresetCatalog, caller: Caller, request: ppb.ListPresetsRequest
) -> ppb.ListPresetsResponse:
    return await presets.list(caller.organization, request)


async def _delete_preset(
    presets: PresetCatalog, caller: Caller, request: ppb.DeletePresetRequest
) -> ppb.DeletePresetResponse:
    await presets.delete(caller.organization, request.id)
    return ppb.DeletePresetResponse()


PRESET_SERVICE: Service[PresetCatalog] = Service(
    ppb.DESCRIPTOR.services_by_name["PresetService"],
    (
        unary("CreatePreset", ppb.CreatePresetRequest, ppb.CreatePresetResponse, _create_preset),
        unary("GetPreset", ppb.GetPresetRequest, ppb.GetPresetResponse, _get_preset),
        unary("ListPresets", ppb.ListPresetsRequest, ppb.ListPresetsResponse, _list_presets),
        unary("DeletePreset", ppb.DeletePresetRequest, ppb.DeletePresetResponse, _delete_preset),
    ),
)


# WebhookService


async def _get_webhook_settings(
    webhooks: WebhookSettingsService, caller: Caller, request: hpb.GetWebhookSettingsRequest
) -> hpb.GetWebhookSettingsResponse:
    return hpb.GetWebhookSettingsResponse(settings=await webhooks.get(caller.organization))


async def _update_webhook_settings(
    webhooks: WebhookSettingsService, caller: Caller, request: hpb.UpdateWebhookSettingsRequest
) -> hpb.UpdateWebhookSettingsResponse:
    settings = await webhooks.update(caller.organization, request)
    return hpb.UpdateWebhookSettingsResponse(settings=settings)


async def _rotate_webhook_secret(
    webhooks: WebhookSettingsService, caller: Caller, request: hpb.RotateWebhookSecretRequest
) -> hpb.RotateWebhookSecretResponse:
    return await webhooks.rotate(caller.organization, request)


WEBHOOK_SERVICE: Service[WebhookSettingsService] = Service(
    hpb.DESCRIPTOR.services_by_name["WebhookService"],
    (
        unary(
            "GetWebhookSettings",
            hpb.GetWebhookSettingsRequest,
            hpb.GetWebhookSettingsResponse,
            _get_webhook_settings,
        ),
        unary(
            "UpdateWebhookSettings",
            hpb.UpdateWebhookSettingsRequest,
            hpb.UpdateWebhookSettingsResponse,
            _update_webhook_settings,
        ),
        unary(
            "RotateWebhookSecret",
            hpb.RotateWebhookSecretRequest,
            hpb.RotateWebhookSecretResponse,
            _rotate_webhook_secret,
        ),
    ),
)

# OriginService


async def _create_origin(
    origins: OriginCatalog, caller: Caller, request: opb.CreateOriginRequest
) -> opb.CreateOriginResponse:
    return opb.CreateOriginResponse(
        origin=await origins.create(caller.organization, request.origin)
    )


async def _get_origin(
    origins: OriginCatalog, caller: Caller, request: opb.GetOriginRequest
) -> opb.GetOriginResponse:
    return opb.GetOriginResponse(origin=await origins.get(caller.organization, request.id))


async def _list_origins(
    origins: OriginCatalog, caller: Caller, request: opb.ListOriginsRequest
) -> opb.ListOriginsResponse:
    return await origins.list(caller.organization, request)


async def _update_origin(
    origins: OriginCatalog, caller: Caller, request: opb.UpdateOriginRequest
) -> opb.UpdateOriginResponse:
    return opb.UpdateOriginResponse(
        origin=await origins.update(caller.organization, request.origin)
    )


async def _delete_origin(
    origins: OriginCatalog, caller: Caller, request: opb.DeleteOriginRequest
) -> opb.DeleteOriginResponse:
    await origins.delete(caller.organization, request.id)
    return opb.DeleteOriginResponse()


ORIGIN_SERVICE: Service[OriginCatalog] = Service(
    opb.DESCRIPTOR.services_by_name["OriginService"],
    (
        unary("CreateOrigin", opb.CreateOriginRequest, opb.CreateOriginResponse, _create_origin),
        unary("GetOrigin", opb.GetOriginRequest, opb.GetOriginResponse, _get_origin),
        unary("ListOrigins", opb.ListOriginsRequest, opb.ListOriginsResponse, _list_origins),
        unary("UpdateOrigin", opb.UpdateOriginRequest, opb.UpdateOriginResponse, _update_origin),
        unary("DeleteOrigin", opb.DeleteOriginRequest, opb.DeleteOriginResponse, _delete_origin),
    ),
)

# What clients reach, on the public gRPC port and over Connect.
PUBLIC_SERVICES = (JOB_SERVICE, PRESET_SERVICE, WEBHOOK_SERVICE, ORIGIN_SERVICE)


# WorkerService: on the worker listener only (entries made by `internal`).

# "tsk_" + a ULID (26 Crockford base32 characters).
TASK_ID = re.compile(r"tsk_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")


async def _claim(
    tasks: TaskService, caller: Caller, request: wpb.ClaimTaskRequest
) -> wpb.ClaimTaskResponse:
    if request.task_id and not TASK_ID.fullmatch(request.task_id):
        raise InvalidArgument([FieldViolation("task_id", "not a task id (tsk_ + ULID)")])
    wait = request.wait_seconds if request.wait_seconds > 0 else 20.0
    task = await tasks.claim(request.worker_id or "anonymous", min(wait, 60.0), request.task_id)
    return wpb.ClaimTaskResponse(task=task) if task else wpb.ClaimTaskResponse()


async def _report(
    tasks: TaskService, caller: Caller, request: wpb.ReportProgressRequest
) -> wpb.ReportProgressResponse:
    return wpb.ReportProgressResponse(canceled=await tasks.report_progress(request))


async def _complete(
    tasks: TaskService, caller: Caller, request: wpb.CompleteTaskRequest
) -> wpb.CompleteTaskResponse:
    await tasks.complete_task(request)
    return wpb.CompleteTaskResponse()


async def _release(
    tasks: TaskService, caller: Caller, request: wpb.ReleaseTaskRequest
) -> wpb.ReleaseTaskResponse:
    await tasks.release(request)
    return wpb.ReleaseTaskResponse()


async def _grant_transfers(
    tasks: TaskService, caller: Caller, request: wpb.GrantTransfersRequest
) -> wpb.GrantTransfersResponse:
    return await tasks.grant_transfers(request)


async def _announce(
    tasks: TaskService, caller: Caller, request: wpb.AnnounceWorkerRequest
) -> wpb.AnnounceWorkerResponse:
    await tasks.fleet.announce(request)
    return wpb.AnnounceWorkerResponse()


WORKER_SERVICE: Service[TaskService] = Service(
    wpb.DESCRIPTOR.services_by_name["WorkerService"],
    (
        internal("ClaimTask", wpb.ClaimTaskRequest, wpb.ClaimTaskResponse, _claim),
        internal("ReportProgress", wpb.ReportProgressRequest, wpb.ReportProgressResponse, _report),
        internal("CompleteTask", wpb.CompleteTaskRequest, wpb.CompleteTaskResponse, _complete),
        internal("ReleaseTask", wpb.ReleaseTaskRequest, wpb.ReleaseTaskResponse, _release),
        internal(
            "GrantTransfers",
            wpb.GrantTransfersRequest,
            wpb.GrantTransfersResponse,
            _grant_transfers,
        ),
        internal(
            "AnnounceWorker", wpb.AnnounceWorkerRequest, wpb.AnnounceWorkerResponse, _announce
        ),
    ),
)
