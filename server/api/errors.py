"""The one error boundary: domain errors to Connect and gRPC codes.

Both listeners call `to_status`, so a client sees the same code and message
whichever protocol it speaks. Anything unexpected is logged here and reaches
the client as INTERNAL with no detail: never a stack trace.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from google.rpc import error_details_pb2, status_pb2
from protobuf.wkt import Any as ConnectAny

from ..domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StaleLease,
    Unauthenticated,
)

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
]


def to_status(error: BaseException) -> ErrorStatus:
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
    log.error("unexpected error", exc_info=error)
    return ErrorStatus(Code.INTERNAL, grpc.StatusCode.INTERNAL, "internal error")


def connect_error(error: BaseException) -> ConnectError:
    status = to_status(error)
    details = []
    if status.bad_request is not None:
        details.append(
            ErrorDetail(
                ConnectAny(type_url=BAD_REQUEST_TYPE, value=status.bad_request.SerializeToString())
            )
        )
    return ConnectError(status.code, status.message, details)


async def abort_grpc(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    """Abort the call with the mapped status and google.rpc.Status details."""
    status = to_status(error)
    rich = status_pb2.Status(code=status.grpc_code.value[0], message=status.message)
    if status.bad_request is not None:
        rich.details.add().Pack(status.bad_request)
    await context.abort(
        status.grpc_code,
        status.message,
        trailing_metadata=(("grpc-status-details-bin", rich.SerializeToString()),),
    )


def connect_boundary(handler: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """Decorates a unary Connect handler: any error leaves it as the mapped ConnectError."""

    @functools.wraps(handler)
    async def guarded(*args, **kwargs):
        try:
            return await handler(*args, **kwargs)
        except Exception as error:
            raise connect_error(error) from None

    return guarded


def grpc_boundary(handler: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """Decorates a unary grpc.aio handler `(self, request, context)`: errors abort the call."""

    @functools.wraps(handler)
    async def guarded(self, request, context):
        try:
            return await handler(self, request, context)
        except Exception as error:
            await abort_grpc(context, error)

    return guarded
