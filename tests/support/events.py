"""A job's event log, read and filled as the server does it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.v1 import job_pb2, job_service_pb2

from server.events.hub import COALESCE_AFTER, EventReader
from server.store.store import Store

from . import ORG
from .specs import mp4_request

if TYPE_CHECKING:  # the wiring reads the log through `event_reader`: no import cycle at run time
    from .wiring import Services

# Two events each: job progress and the output's progress.
LONG_LOG_PROGRESS_STEPS = 30


def event_reader(store: Store) -> EventReader:
    """The hub's read of a job's log, one transaction a read (as `server/app.py` wires it)."""

    async def read_events(job_id: str, after: int) -> list[tuple[int, bytes]]:
        async with store.transaction() as tx:
            return await tx.events.events_after(job_id, after)

    return read_events


async def job_with_long_log(services: Services) -> tuple[str, int]:
    """A canceled job with well over COALESCE_AFTER logged events; returns (id, last sequence)."""
    job = await services.jobs.create(ORG, mp4_request(services.input_url), "")
    output_id = job.outputs[0].id
    for step in range(1, LONG_LOG_PROGRESS_STEPS + 1):
        async with services.store.transaction() as tx:
            await services.life.emit(
                tx, job.id, progress=job_service_pb2.ProgressEvent(progress=step)
            )
            output = job_pb2.Output(id=output_id, status=job_pb2.OUTPUT_STATUS_PROCESSING)
            output.progress = step
            await services.life.emit(tx, job.id, output=job_service_pb2.OutputEvent(output=output))
    canceled = await services.jobs.cancel(ORG, job.id)
    assert canceled.status == job_pb2.JOB_STATUS_CANCELED
    async with services.store.transaction() as tx:
        last = (await tx.jobs.get_job(ORG, job.id)).job.last_sequence
    assert last > COALESCE_AFTER + 10
    return job.id, last
