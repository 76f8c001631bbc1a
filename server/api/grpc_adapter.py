"""Native gRPC on grpc.aio: the RPC tables as generic handlers, behind the same boundary."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from kiln.v1 import job_service_pb2 as pb

from ..jobs.service import JobService
from ..jobs.tasks import TaskService
from ..origins.catalog import OriginCatalog
from ..webhooks.settings import WebhookSettingsService
from .auth import Authenticator, WorkerToken
from .errors import grpc_internal, grpc_stream, grpc_unary
from .rpc_table import (
    JOB_SERVICE,
    ORIGIN_SERVICE,
    PRESET_SERVICE,
    WEBHOOK_SERVICE,
    WORKER_SERVICE,
    Rpc,
    Service,
)

U = TypeVar("U")

# Wraps one table entry, bound to its use case, in the boundary the listener wants.
Guard = Callable[[str, Rpc[Any], Any], Callable[..., Any]]


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


def _add_service(server: grpc.aio.Server, service: Service[U], uses: U, guard: Guard) -> None:
    """Registers one table the way the generated add_…Servicer_to_server would; the
    server's interceptors (tracing) apply to these handlers like to any other."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for rpc in service.rpcs:
        guarded = guard(service.method_path(rpc), rpc, uses)
        if rpc.stream:
            serialize = SerializeOnce() if rpc.shared_responses else rpc.response.SerializeToString
            handlers[rpc.name] = grpc.unary_stream_rpc_method_handler(
                guarded, request_deserializer=rpc.request.FromString, response_serializer=serialize
            )
        else:
            handlers[rpc.name] = grpc.unary_unary_rpc_method_handler(
                guarded,
                request_deserializer=rpc.request.FromString,
                response_serializer=rpc.response.SerializeToString,
            )
    name = service.descriptor.full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def add_public_services(
    server: grpc.aio.Server,
    jobs: JobService,
    auth: Authenticator,
    webhooks: WebhookSettingsService | None = None,
    origins: OriginCatalog | None = None,
) -> None:
    """What clients reach on the public gRPC port: JobService, PresetService, WebhookService,
    OriginService."""

    def guard(path: str, rpc: Rpc[Any], uses: Any) -> Callable[..., Any]:
        return (grpc_stream if rpc.stream else grpc_unary)(path, rpc, uses, auth)

    _add_service(server, JOB_SERVICE, jobs, guard)
    _add_service(server, PRESET_SERVICE, jobs.presets, guard)
    if webhooks is not None:
        _add_service(server, WEBHOOK_SERVICE, webhooks, guard)
    if origins is not None:
        _add_service(server, ORIGIN_SERVICE, origins, guard)


def add_worker_service(server: grpc.aio.Server, tasks: TaskService, worker_token: str) -> None:
    """The worker listener: WorkerService only, never on the public port."""
    token = WorkerToken(worker_token)

    def guard(path: str, rpc: Rpc[Any], uses: Any) -> Callable[..., Any]:
        return grpc_internal(path, rpc, uses, token)

    _add_service(server, WORKER_SERVICE, tasks, guard)
