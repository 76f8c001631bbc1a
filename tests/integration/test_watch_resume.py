"""Watch resume through the real JobService, hub and store: every logged event, in order.

A job gets far more events than the live-coalescing threshold (progress and per-output
progress, the kind a slow live watcher may skip), then is canceled through the use case,
which logs the output, status_change and completed events that end a stream.
"""

from __future__ import annotations

import asyncio

from kiln.v1 import job_pb2, job_service_pb2

from tests.support import ORG
from tests.support.events import LONG_LOG_PROGRESS_STEPS, job_with_long_log
from tests.support.wiring import Services

TIMEOUT = 30.0


async def watch_to_end(service: Services, request) -> list[job_service_pb2.WatchResponse]:
    async def collect():
        return [event async for event in await service.jobs.watch(ORG, request)]

    return await asyncio.wait_for(collect(), TIMEOUT)


async def test_resume_from_zero_delivers_the_whole_log(service):
    job_id, last = await job_with_long_log(service)
    events = await watch_to_end(service, job_service_pb2.WatchRequest(id=job_id, after_sequence=0))
    assert [event.sequence for event in events] == list(range(1, last + 1))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds.count("progress") == LONG_LOG_PROGRESS_STEPS
    assert [e.progress.progress for e in events if e.HasField("progress")] == list(
        range(1, LONG_LOG_PROGRESS_STEPS + 1)
    )
    assert kinds[-2:] == ["status_change", "completed"]
    assert events[-1].completed.job.status == job_pb2.JOB_STATUS_CANCELED


async def test_resume_from_the_middle_delivers_the_rest(service):
    job_id, last = await job_with_long_log(service)
    events = await watch_to_end(service, job_service_pb2.WatchRequest(id=job_id, after_sequence=7))
    assert [event.sequence for event in events] == list(range(8, last + 1))


async def test_resume_at_the_end_of_a_terminal_job_closes(service):
    job_id, last = await job_with_long_log(service)
    request = job_service_pb2.WatchRequest(id=job_id, after_sequence=last)
    assert await watch_to_end(service, request) == []
