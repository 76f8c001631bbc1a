"""The one error boundary: domain errors to Connect and gRPC codes, and the request screen.

Both listeners call `to_status`, so a client sees the same code and message
whichever protocol it speaks. Anything unexpected is logged here, with the RPC and the
id it was about, and reaches the client as INTERNAL with no detail: never a stack trace.

Every RPC of the tables (rpc_table) is wrapped by one of the guards below, for the
protocol it is mounted on. A public guard screens the request before the call runs: no
string of the message and none of the headers that carry request data may hold control
characters (domain.request_text). It then resolves the caller's organization from the
API key, once, for every RPC whose entry needs one. Being here, neither can be
forgotten by a call, Watch included.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.request import RequestContext
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from protobuf.wkt import Any as ConnectAny

from common.log_setup import job_log_context

from ..domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StaleLease,
    Unauthenticated,
    Unavailable,
)
from ..domain.request_text import control_character_violations, text_violation
from .auth import Authenticator, Header, WorkerToken, header_reader
from .rpc_table import Caller, Rpc

log = logging.getLogger(__name__)

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


@dataclass(frozen=True)
class ErrorStatus:
    code: Code
    grpc_code: grpc.StatusCode
    message: str
    bad_request: error_details_pb2.BadRequest | None = field(default=None)


_CODES: list[tuple[type[DomainError], Code, grpc.StatusCode]] = [
    (InvalidArgument, Code.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, Code.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, Code.ALREADY_EXISTS, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, Code.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION),
    (Unauthenticated, Code.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, Code.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED),
    # A stale lease means another worker owns the task now: that worker must stop.
    (StaleLease, Code.ABORTED, grpc.StatusCode.ABORTED),
    # Retryable by definition: a Watch ended by a shutdown resumes with after_sequence.
    (Unavailable, Code.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
]


# Headers that carry request data (the rest are transport's or auth's business).
SCREENED_HEADERS = ("X-Idempotency-Key", "X-Organization-ID")


def screen_request(request: Message, header: Header) -> None:
    """INVALID_ARGUMENT, naming each field, if request text holds control characters."""
    violations = control_character_violations(request)
    for name in SCREENED_HEADERS:
        value = header(name.lower())
        if value and (violation := text_violation(name, value)) is not None:
            violations.append(violation)
    if violations:
        raise InvalidArgument(violations)


def to_status(error: BaseException, rpc: str = "", request: Message | None = None) -> ErrorStatus:
    for kind, code, grpc_code in _CODES:
        if isinstance(error, kind):
            bad_request = None
            if isinstance(error, InvalidArgument):
                bad_request = error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            return ErrorStatus(code, grpc_code, error.message, bad_request)
    log.error("unexpected error in %s%s", rpc or "an RPC", _about(request), exc_info=error)
    return ErrorStatus(Code.INTERNAL, grpc.StatusCode.INTERNAL, "internal error")


def _about(request: Message | None) -> str:
    """The resource id the request names, for the log line; ids were screened already."""
    if request is None or "id" not in request.DESCRIPTOR.fields_by_name:
        return ""
    return f" for id {request.id!r}"


def connect_error(
    error: BaseException, rpc: str = "", request: Message | None = None
) -> ConnectError:
    status = to_status(error, rpc, request)
    details = []
    if status.bad_request is not None:
        details.append(
            ErrorDetail(
                ConnectAny(type_url=BAD_REQUEST_TYPE, value=status.bad_request.SerializeToString())
            )
        )
    return ConnectError(status.code, status.message, details)


async def abort_grpc(
    context: grpc.aio.ServicerContext,
    error: BaseException,
    rpc: str = "",
    request: Message | None = None,
) -> None:
    """Abort the call with the mapped status and google.rpc.Status details."""
    status = to_status(error, rpc, request)
    rich = status_pb2.Status(code=status.grpc_code.value[0], message=status.message)
    if status.bad_request is not None:
        rich.details.add().Pack(status.bad_request)
    await context.abort(
        status.grpc_code,
        status.message,
        trailing_metadata=(("grpc-status-details-bin", rich.SerializeToString()),),
    )


def _grpc_headers(context: grpc.aio.ServicerContext) -> Header:
    return header_reader(list(context.invocation_metadata() or ()))


U = TypeVar("U")

# What the generated Connect applications and grpc.aio call: (request, ctx or context).
ConnectUnary = Callable[[Any, RequestContext], Awaitable[Message]]
ConnectStream = Callable[[Any, RequestContext], AsyncIterator[Message]]
GrpcUnary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message | None]]
GrpcStream = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Message]]


def _caller(rpc: Rpc[Any], header: Header, organization: str = "") -> Caller:
    return Caller(organization, {name: header(name) or "" for name in rpc.headers})


async def _public_call(
    rpc: Rpc[U], uses: U, auth: Authenticator, request: Message, header: Header
) -> Any:
    """Screen, resolve the organization, run the call: the same steps on both protocols."""
    screen_request(request, header)
    organization = await auth.organization(header) if rpc.organization else ""
    return await rpc.call(uses, _caller(rpc, header, organization), request)


def connect_unary(path: str, rpc: Rpc[U], uses: U, auth: Authenticator) -> ConnectUnary:
    """A public unary RPC for Connect: screened, organization resolved, errors mapped."""

    async def guarded(request: Message, ctx: RequestContext) -> Message:
        try:
            return await _public_call(rpc, uses, auth, request, ctx.request_headers.get)
        except Exception as error:
            raise connect_error(error, path, request) from None

    return guarded


def connect_stream(path: str, rpc: Rpc[U], uses: U, auth: Authenticator) -> ConnectStream:
    """A public server-streaming RPC for Connect: as unary, errors mapped also mid-stream."""

    async def guarded(request: Message, ctx: RequestContext) -> AsyncIterator[Message]:
        try:
            header = ctx.request_headers.get
            async for message in await _public_call(rpc, uses, auth, request, header):
                yield message
        except Exception as error:
            raise connect_error(error, path, request) from None

    return guarded


def grpc_unary(path: str, rpc: Rpc[U], uses: U, auth: Authenticator) -> GrpcUnary:
    """A public unary RPC for grpc.aio: screened, organization resolved, errors abort."""

    async def guarded(request: Message, context: grpc.aio.ServicerContext) -> Message | None:
        try:
            return await _public_call(rpc, uses, auth, request, _grpc_headers(context))
        except Exception as error:
            await abort_grpc(context, error, path, request)
            return None

    return guarded


def grpc_stream(path: str, rpc: Rpc[U], uses: U, auth: Authenticator) -> GrpcStream:
    """A public server-streaming RPC for grpc.aio: errors abort (also mid-stream)."""

    async def guarded(
        request: Message, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Message]:
        try:
            header = _grpc_headers(context)
            async for message in await _public_call(rpc, uses, auth, request, header):
                yield message
        except Exception as error:
            await abort_grpc(context, error, path, request)

    return guarded


def grpc_internal(path: str, rpc: Rpc[U], uses: U, token: WorkerToken) -> GrpcUnary:
    """A unary RPC of the internal WorkerService: the worker token checked, errors abort,
    nothing screened.

    Workers report FFmpeg's own words (error lines, notes), which may carry control
    characters; refusing them would lose the report, not protect a client.
    """
    if rpc.stream or rpc.organization:
        # Known when the server starts, not at a worker's first call.
        raise ValueError(f"{path}: the worker listener serves unary RPCs with no organization")

    async def guarded(request: Message, context: grpc.aio.ServicerContext) -> Message | None:
        try:
            # Log lines about this call name its task (and, once looked up, its job).
            with job_log_context(task_id=getattr(request, "task_id", "")):
                header = _grpc_headers(context)
                token.check(header)
                return await rpc.call(uses, _caller(rpc, header), request)
        except Exception as error:
            await abort_grpc(context, error, path, request)
            return None

    return guarded
