"""Every lifecycle as one transition table: jobs, outputs, tasks, webhook deliveries.

The store never writes a status without naming the statuses it may come from
(`UPDATE ... WHERE status IN (...)`), and those come from these tables, so two
racing writers cannot both win and no code path can invent a transition. CHECK
constraints on the status columns (migration 0004) hold the same sets of values.
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


class TaskStatus(StrEnum):
    """A unit of work in the queue: waiting, held under a lease, or ended."""

    QUEUED = "QUEUED"
    LEASED = "LEASED"
    DONE = "DONE"
    CANCELED = "CANCELED"


class TaskKind(StrEnum):
    PROBE = "PROBE"
    TRANSCODE = "TRANSCODE"
    # A chunked output's pieces: a time range of its video, its whole audio, and the merge
    # that joins them once every piece is done (the job's stage is MERGING while it runs).
    CHUNK = "CHUNK"
    AUDIO = "AUDIO"
    MERGE = "MERGE"


# Tasks that make one piece of a chunked output; the MERGE task follows them.
PIECE_KINDS: frozenset[TaskKind] = frozenset({TaskKind.CHUNK, TaskKind.AUDIO})
# Tasks that work on one output (everything but the probe).
OUTPUT_TASK_KINDS: frozenset[TaskKind] = frozenset(
    {TaskKind.TRANSCODE, TaskKind.CHUNK, TaskKind.AUDIO, TaskKind.MERGE}
)


class WorkerState(StrEnum):
    """A worker as operators see it: ACTIVE or DRAINING as it announced itself (the only
    states stored), or LOST, the server's judgement of one not heard from for a lease."""

    ACTIVE = "ACTIVE"
    DRAINING = "DRAINING"
    LOST = "LOST"


class DeliveryStatus(StrEnum):
    """A webhook notification: still to be sent (or retried), received, or given up."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


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


# target -> sources, for outputs. Retry puts every output that did not complete back to
# PENDING (a job that failed while probing still has PENDING outputs: a no-op reset).
OUTPUT_TRANSITIONS: dict[OutputStatus, frozenset[OutputStatus]] = {
    OutputStatus.PENDING: frozenset(
        {OutputStatus.PENDING, OutputStatus.FAILED, OutputStatus.CANCELED}
    ),
    OutputStatus.PROCESSING: frozenset({OutputStatus.PENDING}),
    # PENDING too: a claim marks its output PROCESSING in a second transaction after the
    # lease, and a server that died between the two must not strand the result.
    OutputStatus.COMPLETED: frozenset({OutputStatus.PENDING, OutputStatus.PROCESSING}),
    OutputStatus.FAILED: frozenset({OutputStatus.PENDING, OutputStatus.PROCESSING}),
    OutputStatus.CANCELED: frozenset({OutputStatus.PENDING, OutputStatus.PROCESSING}),
}

# target -> sources, for tasks. A task is inserted QUEUED; QUEUED from LEASED is the
# reaper taking back an expired lease.
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.LEASED}),
    TaskStatus.LEASED: frozenset({TaskStatus.QUEUED}),
    # From QUEUED only when its dispatch gave up (a dead-lettered message).
    TaskStatus.DONE: frozenset({TaskStatus.LEASED, TaskStatus.QUEUED}),
    TaskStatus.CANCELED: frozenset({TaskStatus.QUEUED, TaskStatus.LEASED}),
}

# target -> sources, for webhook deliveries. PENDING from PENDING is a failed attempt
# scheduled again.
DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
}


def allowed_sources(target: JobStatus) -> frozenset[JobStatus]:
    """The statuses from which a job may move to `target`."""
    return TRANSITIONS[target]


def job_sources(target: JobStatus) -> list[str]:
    """The stored statuses a job may move to `target` from (for the guarded UPDATE)."""
    return sorted(TRANSITIONS[target])


def output_sources(target: OutputStatus) -> list[str]:
    """The stored statuses an output may move to `target` from (for the guarded UPDATE)."""
    return sorted(OUTPUT_TRANSITIONS[target])


def task_sources(target: TaskStatus) -> list[str]:
    return sorted(TASK_TRANSITIONS[target])


def delivery_sources(target: DeliveryStatus) -> list[str]:
    return sorted(DELIVERY_TRANSITIONS[target])


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
