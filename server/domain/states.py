"""The job state machine: one transition table, used by the store's guarded updates.

The store never writes a status without naming the statuses it may come from
(`UPDATE ... WHERE status IN (...)`), and those come from this table, so two
racing writers cannot both win and no code path can invent a transition.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Mirrors kiln.v1.JobStatus (without the prefix); stored as text."""

    PENDING = "PENDING"
    PROBING = "PROBING"
    AWAITING_CONFIRMATION = "AWAITING_CONFIRMATION"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"


class OutputStatus(StrEnum):
    """Mirrors kiln.v1.OutputStatus (without the prefix)."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


TERMINAL: frozenset[JobStatus] = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.PARTIAL,
        JobStatus.FAILED,
        JobStatus.REJECTED,
        JobStatus.CANCELED,
    }
)

OUTPUT_TERMINAL: frozenset[OutputStatus] = frozenset(
    {OutputStatus.COMPLETED, OutputStatus.FAILED, OutputStatus.CANCELED}
)

_NON_TERMINAL = frozenset(JobStatus) - TERMINAL

# target status -> the statuses a job may move there from.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: TERMINAL - {JobStatus.COMPLETED},  # Retry
    JobStatus.PROBING: frozenset({JobStatus.PENDING}),
    JobStatus.AWAITING_CONFIRMATION: frozenset({JobStatus.PROBING}),
    JobStatus.PROCESSING: frozenset({JobStatus.PROBING, JobStatus.AWAITING_CONFIRMATION}),
    JobStatus.COMPLETED: frozenset({JobStatus.PROCESSING}),
    JobStatus.PARTIAL: frozenset({JobStatus.PROCESSING}),
    JobStatus.FAILED: frozenset({JobStatus.PENDING, JobStatus.PROBING, JobStatus.PROCESSING}),
    JobStatus.REJECTED: frozenset({JobStatus.PENDING, JobStatus.PROBING}),
    JobStatus.CANCELED: _NON_TERMINAL,
}


def allowed_sources(target: JobStatus) -> frozenset[JobStatus]:
    """The statuses from which a job may move to `target`."""
    return TRANSITIONS[target]


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    return source in TRANSITIONS[target]


def final_status(output_statuses: list[OutputStatus]) -> JobStatus:
    """The terminal job status once every output has ended."""
    completed = sum(1 for status in output_statuses if status == OutputStatus.COMPLETED)
    if completed == len(output_statuses):
        return JobStatus.COMPLETED
    if completed > 0:
        return JobStatus.PARTIAL
    return JobStatus.FAILED
