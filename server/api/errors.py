"""The one error boundary: domain errors to Connect and gRPC codes, and the request screen.

Both listeners call `to_status`, so a client sees the same code and message
whichever protocol it speaks. Anything unexpected is logged here, with the RPC and the
id it was about, and reaches the client as INTERNAL with no detail: never a stack trace.

Every public RPC passes through one of the decorators below, which also screen the
request before the handler runs: no string of the message and none of the headers that
carry request data may hold control characters (domain.request_text). Being here, the
check cannot be forgotten by a handler, Watch included.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

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
from .auth import header_reader

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

Header = Callable[[str], str | None]


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


def _connect_rpc(ctx: RequestContext) -> str:
    method = ctx.method
    return f"{method.service_name}/{method.name}"


def _grpc_rpc(servicer: object, handler: Callable) -> str:
    service = getattr(servicer, "service_name", type(servicer).__name__)
    return f"{service}/{handler.__name__}"


def _grpc_headers(context: grpc.aio.ServicerContext) -> Header:
    return header_reader(list(context.invocation_metadata() or ()))


def connect_unary(handler: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """A public unary Connect handler `(self, request, ctx)`: screened, errors mapped."""

    @functools.wraps(handler)
    async def guarded(self, request, ctx):
        try:
            screen_request(request, ctx.request_headers.get)
            return await handler(self, request, ctx)
        except Exception as error:
            raise connect_error(error, _connect_rpc(ctx), request) from None

    return guarded


def connect_stream(handler: Callable[..., AsyncIterator]) -> Callable[..., AsyncIterator]:
    """A public server-streaming Connect handler: screened, errors mapped (also mid-stream)."""

    @functools.wraps(handler)
    async def guarded(self, request, ctx):
        try:
            screen_request(request, ctx.request_headers.get)
            async for message in handler(self, request, ctx):
                yield message
        except Exception as error:
            raise connect_error(error, _connect_rpc(ctx), request) from None

    return guarded


def grpc_unary(handler: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """A public unary grpc.aio handler `(self, request, context)`: screened, errors abort."""

    @functools.wraps(handler)
    async def guarded(self, request, context):
        try:
            screen_request(request, _grpc_headers(context))
            return await handler(self, request, context)
        except Exception as error:
            await abort_grpc(context, error, _grpc_rpc(self, handler), request)

    return guarded


def grpc_stream(handler: Callable[..., AsyncIterator]) -> Callable[..., AsyncIterator]:
    """A public server-streaming grpc.aio handler: screened, errors abort (also mid-stream)."""

    @functools.wraps(handler)
    async def guarded(self, request, context):
        try:
            screen_request(request, _grpc_headers(context))
            async for message in handler(self, request, context):
                yield message
        except Exception as error:
            await abort_grpc(context, error, _grpc_rpc(self, handler), request)

    return guarded


def grpc_internal(handler: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """A unary handler of the internal WorkerService: errors abort, nothing screened.

    Workers report FFmpeg's own words (error lines, notes), which may carry control
    characters; refusing them would lose the report, not protect a client.
    """

    @functools.wraps(handler)
    async def guarded(self, request, context):
        try:
            # Log lines about this call name its task (and, once looked up, its job).
            with job_log_context(task_id=getattr(request, "task_id", "")):
                return await handler(self, request, context)
        except Exception as error:
            await abort_grpc(context, error, _grpc_rpc(self, handler), request)

    return guarded
