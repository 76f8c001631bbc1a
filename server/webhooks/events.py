"""Webhook events: their names, their bodies, and how one is queued.

An event is queued in the transaction of the change it reports (a delivery row in the
outbox), so it is sent exactly when that change committed and survives a restart; the
sender (sender.py) signs and posts it. Where it goes is decided then: the job's own
webhook_url, else its organization's default URL, else nowhere.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from google.protobuf import json_format
from kiln.v1 import job_pb2

from ..domain import ids
from ..domain.new_records import NewWebhookDelivery
from ..domain.states import JobStatus
from ..store.models import Job
from ..store.store import Tx, now


class EventType(StrEnum):
    JOB_AWAITING_CONFIRMATION = "job.awaiting_confirmation"
    JOB_PROGRESS = "job.progress"
    JOB_COMPLETED = "job.completed"
    JOB_PARTIAL = "job.partial"
    JOB_FAILED = "job.failed"
    JOB_REJECTED = "job.rejected"
    JOB_CANCELED = "job.canceled"
    OUTPUT_COMPLETED = "output.completed"
    OUTPUT_FAILED = "output.failed"


# The job statuses that announce themselves, each with its event.
STATUS_EVENTS: dict[JobStatus, EventType] = {
    JobStatus.AWAITING_CONFIRMATION: EventType.JOB_AWAITING_CONFIRMATION,
    JobStatus.COMPLETED: EventType.JOB_COMPLETED,
    JobStatus.PARTIAL: EventType.JOB_PARTIAL,
    JobStatus.FAILED: EventType.JOB_FAILED,
    JobStatus.REJECTED: EventType.JOB_REJECTED,
    JobStatus.CANCELED: EventType.JOB_CANCELED,
}

# job.progress goes out once per run (attempt) as the job's progress reaches each of these.
PROGRESS_THRESHOLDS = (25, 50, 75)


def crossed_thresholds(before: float, after: float) -> list[int]:
    """The thresholds a progress change from `before` to `after` reached for the first time.

    Progress only grows within a run, so each threshold is crossed by exactly one change."""
    return [threshold for threshold in PROGRESS_THRESHOLDS if before < threshold <= after]


def job_data(job: job_pb2.Job) -> dict[str, Any]:
    """Download URLs are left out (they expire, and a retry may come hours later): the
    receiver calls Get for fresh ones."""
    return {"job": _json(job)}


def output_data(job: Job, output: job_pb2.Output) -> dict[str, Any]:
    return {"job_id": job.id, "attempt": job.attempt, "output": _json(output)}


def progress_data(job: job_pb2.Job, threshold: int) -> dict[str, Any]:
    return {"progress": threshold, "job": _json(job)}


async def queue_event(tx: Tx, job: Job, event_type: EventType, data: dict[str, Any]) -> bool:
    """Queue one event of `job` in the caller's transaction; False when it has nowhere to go."""
    url = job.webhook_url or await tx.webhook_settings.default_webhook_url(job.organization_id)
    if not url:
        return False
    moment = now()
    await tx.webhook_deliveries.insert_delivery(
        NewWebhookDelivery(
            id=ids.new_id("msg"),
            job_id=job.id,
            organization_id=job.organization_id,
            event_type=str(event_type),
            url=url,
            payload=json.dumps(
                {"type": str(event_type), "timestamp": moment.isoformat(), "data": data},
                separators=(",", ":"),
            ),
            created_at=moment,
        )
    )
    return True


def _json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)
