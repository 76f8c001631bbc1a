"""Watch resume through the real JobService, hub and store: every logged event, in order.

A job gets far more events than the live-coalescing threshold (progress and per-output
progress, the kind a slow live watcher may skip), then is canceled through the use case,
which logs the output, status_change and completed events that end a stream.
"""

from __future__ import annotations

import asyncio

from kiln.v1 import job_pb2, job_service_pb2

from server.events.hub import COALESCE_AFTER

from .conftest import ORG, Service

TIMEOUT = 30.0
PROGRESS_STEPS = 30  # two events each: job progress and the output's progress


async def job_with_long_log(service: Service) -> tuple[str, int]:
    """A canceled job with well over COALESCE_AFTER logged events; returns (id, last sequence)."""
    request = job_service_pb2.CreateRequest(
        input_url=service.input_url,
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
            )
        ],
    )
    job = await service.jobs.create(ORG, request, "")
    output_id = job.outputs[0].id
    for step in range(1, PROGRESS_STEPS + 1):
        async with service.store.transaction() as tx:
            await service.life.emit(
                tx, job.id, progress=job_service_pb2.ProgressEvent(progress=step)
            )
            output = job_pb2.Output(id=output_id, status=job_pb2.OUTPUT_STATUS_PROCESSING)
            output.progress = step
            await service.life.emit(tx, job.id, output=job_service_pb2.OutputEvent(output=output))
    canceled = await service.jobs.cancel(ORG, job.id)
    assert canceled.status == job_pb2.JOB_STATUS_CANCELED
    async with service.store.transaction() as tx:
        last = (await tx.get_job(ORG, job.id)).job.last_sequence
    assert last > COALESCE_AFTER + 10
    return job.id, last


async def watch_to_end(service: Service, request) -> list[job_service_pb2.WatchResponse]:
    async def collect():
        return [event async for event in await service.jobs.watch(ORG, request)]

    return await asyncio.wait_for(collect(), TIMEOUT)


async def test_resume_from_zero_delivers_the_whole_log(service):
    job_id, last = await job_with_long_log(service)
    events = await watch_to_end(service, job_service_pb2.WatchRequest(id=job_id, after_sequence=0))
    assert [event.sequence for event in events] == list(range(1, last + 1))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds.count("progress") == PROGRESS_STEPS
    assert [e.progress.progress for e in events if e.HasField("progress")] == list(
        range(1, PROGRESS_STEPS + 1)
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
