"""Domain errors. The API edge maps each to one Connect/gRPC code (server/api/errors.py)."""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error a client may see; the message is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field, with a path like `outputs[0].video[1].codec`."""

    field: str
    description: str


class InvalidArgument(DomainError):
    """The request is malformed; lists every violation at once."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}")
        self.violations = violations


class NotFound(DomainError):
    """No such resource in the caller's organization (also for another org's ids)."""


class AlreadyExists(DomainError):
    """The resource the request names exists already, and not as this request would make it."""


class FailedPrecondition(DomainError):
    """The state machine forbids this transition now."""


class Unauthenticated(DomainError):
    """Missing, malformed or unknown API key."""


class PermissionDenied(DomainError):
    """Authenticated, but not allowed (e.g. X-Organization-ID does not match the key)."""


class StaleLease(DomainError):
    """A worker report carried a lease token that is no longer current."""


class Unavailable(DomainError):
    """The server is going away (a shutdown) or cannot reach its database for a moment:
    retry, on this or another replica."""
