"""Store rows built by hand, for tests that write below the use cases."""

from __future__ import annotations

from datetime import UTC, datetime

from kiln.v1 import job_pb2

from server.domain import ids
from server.domain.states import JobStatus, OutputStatus
from server.store.models import Job, Output

from . import ORG


def make_job(
    organization_id: str = ORG,
    *,
    status: JobStatus = JobStatus.PENDING,
    idempotency_key: str | None = None,
    priority: int = job_pb2.PRIORITY_STANDARD,
) -> Job:
    moment = datetime.now(UTC)
    return Job(
        id=ids.job_id(),
        organization_id=organization_id,
        status=str(status),
        stage=0,
        progress=0.0,
        priority=priority,
        delayed_start=False,
        input_url="file:///media/in.mp4",
        concat_input_urls=[],
        job_metadata={"team": "video"},
        webhook_url="",
        idempotency_key=idempotency_key,
        output_origin="",
        currency="USD",
        attempt=1,
        last_sequence=0,
        created_at=moment,
        updated_at=moment,
    )


def make_outputs(job: Job, count: int) -> list[Output]:
    return [
        Output(
            id=ids.output_id(),
            job_id=job.id,
            position=position,
            spec=job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4).SerializeToString(),
            status=str(OutputStatus.PENDING),
            progress=0.0,
        )
        for position in range(count)
    ]
