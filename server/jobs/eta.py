"""An honest ETA: how long a running output, and its job, have left.

Only from what the server already knows: an output's progress (0-100; for a chunked output
the encoded fraction over its chunks, used the same way) and when it started running (its
first task of the attempt leased, Output.running_since). The rate is the progress gained
over the time since; what is left takes what is left at that rate. The first reports are
noise (the input opened, the encoder's lookahead filled), so below MIN_PROGRESS or before
MIN_ELAPSED there is no estimate rather than a wild one.

An output without a rate of its own yet (still queued, or just started) is estimated from
the queue ahead of it and the fleet's measured speed instead (queue_eta.py), when the fleet
has measured its kind of output. A job's outputs run side by side, so the job has as long as
its slowest unfinished output; an unfinished output with no estimate either way leaves the
job without one: absent says "unknown", never 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..domain.states import JobStatus, OutputStatus

MIN_PROGRESS = 3.0
MIN_ELAPSED = 2.0
UNFINISHED = (OutputStatus.PENDING, OutputStatus.PROCESSING)


def output_eta(
    status: str, progress: float, running_since: datetime | None, moment: datetime
) -> float | None:
    """Seconds the output has left at the rate it has kept since it started, rounded to
    0.1 s; None when it is not running or it is too early to tell."""
    if status != OutputStatus.PROCESSING or running_since is None:
        return None
    elapsed = (moment - running_since).total_seconds()
    if progress < MIN_PROGRESS or elapsed < MIN_ELAPSED:
        return None
    left = max(0.0, 100.0 - progress)
    return round(elapsed * left / progress, 1)


def needs_queue(job_status: str, outputs: Iterable[tuple[str, float | None]]) -> bool:
    """Whether a running job has an unfinished output its own rate cannot estimate: only
    then is the queue worth reading."""
    return job_status == JobStatus.PROCESSING and any(
        status in UNFINISHED and eta is None for status, eta in outputs
    )


def job_eta(job_status: str, outputs: Iterable[tuple[str, float | None]]) -> float | None:
    """The job's seconds left from its outputs' (status, eta): the largest among the
    unfinished ones, None when one of them has none, or the job is not PROCESSING."""
    if job_status != JobStatus.PROCESSING:
        return None
    left = [eta for status, eta in outputs if status in UNFINISHED]
    if not left or any(eta is None for eta in left):
        return None
    return max(eta for eta in left if eta is not None)
