"""A chunked output whose merge failed, retried over a real store (SQLite and PostgreSQL): every
piece is kept, so the retry queues its MERGE at once, over the first attempt's results."""

from __future__ import annotations

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.jobs.chunk_plan import ChunkSettings
from tests.support import ORG
from tests.support.wiring import Services

CHUNK_BYTES = 300


def chunk_done(service: Services, task: wpb.Task) -> wpb.CompleteTaskRequest:
    """A 1 s chunk's result, its file written where the worker would put it."""
    name = f"chunks/chunk_{task.chunk.index:05d}.mp4"
    path = service.storage.path_for(f"{task.output_prefix}/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * CHUNK_BYTES)
    result = wpb.ChunkResult(
        files=[job_pb2.OutputFile(path=name, size_bytes=CHUNK_BYTES)],
        encoded_seconds=1.0,
        frame_count=30,
    )
    return wpb.CompleteTaskRequest(task_id=task.id, lease_token=task.lease_token, chunk=result)


async def test_a_failed_merge_is_retried_without_encoding_a_chunk(service: Services):
    # The 2 s probed input (no audio) is cut into two chunks of 1 s.
    service.life.chunking = ChunkSettings(threshold_seconds=1, chunk_seconds=1)
    job = await service.create()
    probe = await service.claim()
    await service.tasks.complete_task(service.probed(probe))
    chunks = [await service.claim(), await service.claim()]
    assert [t.kind for t in chunks] == [wpb.TASK_KIND_CHUNK] * 2
    for task in chunks:
        await service.tasks.complete_task(chunk_done(service, task))
    merge = await service.claim()
    assert merge.kind == wpb.TASK_KIND_MERGE
    error = job_pb2.JobError(code="ENCODE_FAILED", message="the merge's worker gave up")
    await service.tasks.complete_task(
        wpb.CompleteTaskRequest(task_id=merge.id, lease_token=merge.lease_token, error=error)
    )
    assert (await service.jobs.get(ORG, job.id)).status == job_pb2.JOB_STATUS_FAILED

    await service.jobs.retry(ORG, job.id)
    probe = await service.claim()
    await service.tasks.complete_task(service.probed(probe))
    again = await service.claim()
    assert again.kind == wpb.TASK_KIND_MERGE, again
    assert [c.files[0].path for c in again.merge.chunks] == [
        "chunks/chunk_00000.mp4",
        "chunks/chunk_00001.mp4",
    ]
    assert await service.tasks.claim("w", wait_seconds=0) is None
    retried = await service.jobs.get(ORG, job.id)
    assert retried.stage == job_pb2.JOB_STAGE_MERGING
