"""The RPC tables cover the protos, and both adapters mount every entry.

A method added to a .proto (or a new service) without a table entry fails here, before
a client ever meets UNIMPLEMENTED on one protocol and not the other.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import grpc
import kiln.v1
import kiln.worker.v1
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf.descriptor import ServiceDescriptor
from kiln.v1 import job_service_pb2 as pb

from server.api.auth import Authenticator, Header
from server.api.connect_adapter import connect_service, method_attribute
from server.api.grpc_adapter import SerializeOnce, add_public_services, add_worker_service
from server.api.rpc_table import JOB_SERVICE, PUBLIC_SERVICES, WORKER_SERVICE, Service
from server.domain.errors import NotFound

TABLES: dict[str, Service[Any]] = {
    table.descriptor.full_name: table for table in (*PUBLIC_SERVICES, WORKER_SERVICE)
}


def modules(package: ModuleType, suffix: str) -> list[ModuleType]:
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith(suffix)
    ]


def proto_services() -> list[ServiceDescriptor]:
    """Every service the generated code defines, read from the packages, not a list."""
    return [
        service
        for package in (kiln.v1, kiln.worker.v1)
        for module in modules(package, "_pb2")
        for service in module.DESCRIPTOR.services_by_name.values()
    ]


def test_every_proto_service_has_a_table():
    assert sorted(s.full_name for s in proto_services()) == sorted(TABLES)


@pytest.mark.parametrize("descriptor", proto_services(), ids=lambda s: s.full_name)
def test_the_table_matches_its_service_method_for_method(descriptor: ServiceDescriptor):
    table = TABLES[descriptor.full_name]
    assert [rpc.name for rpc in table.rpcs] == [m.name for m in descriptor.methods]
    for rpc, method in zip(table.rpcs, descriptor.methods, strict=True):
        assert rpc.request.DESCRIPTOR.full_name == method.input_type.full_name, rpc.name
        assert rpc.response.DESCRIPTOR.full_name == method.output_type.full_name, rpc.name
        assert rpc.stream == method.server_streaming, rpc.name
        assert not method.client_streaming, f"{rpc.name}: no adapter takes request streams"


def test_only_the_worker_service_goes_without_an_organization():
    assert all(rpc.organization for table in PUBLIC_SERVICES for rpc in table.rpcs)
    assert not any(rpc.organization for rpc in WORKER_SERVICE.rpcs)


@pytest.mark.parametrize("table", PUBLIC_SERVICES, ids=lambda t: t.descriptor.full_name)
def test_connect_service_has_every_method_the_generated_app_calls(table: Service[Any]):
    connect_module = importlib.import_module(
        table.descriptor.file.name.replace("/", ".").removesuffix(".proto") + "_connect"
    )
    protocol = getattr(connect_module, table.descriptor.name)
    called = {name for name, value in vars(protocol).items() if callable(value)}
    called -= {name for name in called if name.startswith("_")}
    service = connect_service(table, object(), cast(Authenticator, None))
    assert set(vars(service)) == called


def test_method_attribute_spells_like_the_connect_generator():
    assert method_attribute("DeleteOutputs") == "delete_outputs"
    assert method_attribute("GetWebhookSettings") == "get_webhook_settings"
    assert method_attribute("List") == "list"


class CapturingServer:
    """Stands in for grpc.aio.Server: keeps what each service registers."""

    def __init__(self) -> None:
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self.generic: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.registered[service] = handlers


def test_grpc_mounts_every_entry_on_its_listener():
    public, worker = CapturingServer(), CapturingServer()
    jobs = SimpleNamespace(presets=object())
    add_public_services(
        cast(Any, public),
        cast(Any, jobs),
        cast(Authenticator, None),
        webhooks=cast(Any, 1),
        origins=cast(Any, 2),
    )
    add_worker_service(cast(Any, worker), cast(Any, object()), worker_token="")
    assert sorted(public.registered) == sorted(t.descriptor.full_name for t in PUBLIC_SERVICES)
    assert list(worker.registered) == [WORKER_SERVICE.descriptor.full_name]
    assert len(public.generic) == len(PUBLIC_SERVICES) and len(worker.generic) == 1
    for server in (public, worker):
        for name, handlers in server.registered.items():
            table = TABLES[name]
            assert list(handlers) == [rpc.name for rpc in table.rpcs]
            for rpc in table.rpcs:
                assert handlers[rpc.name].response_streaming == rpc.stream
    watch = public.registered[JOB_SERVICE.descriptor.full_name]["Watch"]
    assert isinstance(watch.response_serializer, SerializeOnce)


class CountingAuth:
    def __init__(self) -> None:
        self.calls = 0

    async def organization(self, header: Header) -> str:
        self.calls += 1
        return "org_1"


class RecordingJobs:
    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []

    async def create(self, organization: str, request: pb.CreateRequest, key: str) -> Any:
        self.created.append((organization, key))
        return None

    async def get(self, organization: str, job_id: str) -> Any:
        raise NotFound(f"job {job_id} not found")


def context(headers: dict[str, str]) -> Any:
    return SimpleNamespace(request_headers=headers)


async def test_the_boundary_resolves_the_organization_once_and_hands_declared_headers():
    auth, jobs = CountingAuth(), RecordingJobs()
    service = connect_service(JOB_SERVICE, jobs, cast(Authenticator, auth))
    await service.create(pb.CreateRequest(), context({"x-idempotency-key": "k1"}))
    await service.create(pb.CreateRequest(), context({}))
    assert jobs.created == [("org_1", "k1"), ("org_1", "")]
    assert auth.calls == 2


async def test_the_boundary_maps_domain_errors_and_screens_first():
    auth = CountingAuth()
    service = connect_service(JOB_SERVICE, RecordingJobs(), cast(Authenticator, auth))
    with pytest.raises(ConnectError) as caught:
        await service.get(pb.GetRequest(id="job_x"), context({}))
    assert caught.value.code == Code.NOT_FOUND
    assert caught.value.message == "job job_x not found"
    # A control character is refused before anyone asks who is calling.
    with pytest.raises(ConnectError) as caught:
        await service.get(pb.GetRequest(id="job\x00"), context({}))
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert auth.calls == 1
