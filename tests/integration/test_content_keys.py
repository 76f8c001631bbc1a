"""Content keys over a real store (SQLite and PostgreSQL): made when an encrypted output's
task is first claimed, sealed at rest, the same for a claim of the same attempt, new for a
retried job (the previous attempt's gone)."""

from __future__ import annotations

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from sqlalchemy import text

from tests.support import ORG
from tests.support.specs import mp4_request
from tests.support.wiring import Services

# 1 s segments of the 2 s probed input, a key every segment: 2 segments and a spare.
ROTATING_HLS = job_pb2.OutputSpec(
    type=job_pb2.OUTPUT_TYPE_HLS,
    video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
    segments=job_pb2.SegmentSpec(duration_seconds=1),
    encryption=job_pb2.Encryption(
        scheme=job_pb2.ENCRYPTION_SCHEME_AES_128, rotate_every_segments=1
    ),
)


async def encrypted_transcode(service: Services, job_id: str = "") -> tuple[str, wpb.Task]:
    if not job_id:
        request = mp4_request(service.input_url)
        request.outputs[0].CopyFrom(ROTATING_HLS)
        job_id = (await service.jobs.create(ORG, request, "")).id
    probe = await service.claim()
    await service.tasks.complete_task(service.probed(probe))
    task = await service.claim()
    assert task.kind == wpb.TASK_KIND_TRANSCODE and task.job_id == job_id
    return job_id, task


async def stored_keys(service: Services) -> list[tuple[int, str, str]]:
    async with service.store.reading() as tx:
        rows = await tx.session.execute(
            text("SELECT generation, key_id, sealed_key FROM content_keys ORDER BY id")
        )
        return [tuple(row) for row in rows]


async def test_keys_are_made_once_per_attempt_sealed_and_new_after_retry(service: Services):
    job_id, task = await encrypted_transcode(service)
    keys = list(task.encryption.keys)
    assert task.encryption.scheme == job_pb2.ENCRYPTION_SCHEME_AES_128
    assert task.encryption.rotate_every_segments == 1
    assert [key.first_segment for key in keys] == [0, 1, 2]
    assert all(len(key.key) == 16 and len(key.key_id) == 16 for key in keys)
    assert len({key.key for key in keys}) == 3
    assert [key.uri for key in keys] == [f"kiln-key:{key.key_id.hex()}" for key in keys]

    rows = await stored_keys(service)
    assert [(generation, key_id) for generation, key_id, _ in rows] == [
        (1, key.key_id.hex()) for key in keys
    ]
    for (_, _, sealed), key in zip(rows, keys, strict=True):
        assert sealed.startswith("v1.test.")
        assert key.key.hex() not in sealed and key.key not in sealed.encode()
    # The key endpoint's lookup opens them, for this job, output and attempt only.
    first = keys[0]
    output_id = task.output_id
    assert await service.content_keys.key(job_id, output_id, 1, first.key_id.hex()) == first.key
    assert await service.content_keys.key(job_id, output_id, 2, first.key_id.hex()) is None
    assert await service.content_keys.key("job_other", output_id, 1, first.key_id.hex()) is None
    shown = (await service.jobs.get(ORG, job_id)).outputs[0].encryption
    assert list(shown.key_ids) == [key.key_id.hex() for key in keys]

    # The attempt fails; Retry makes a new attempt, and its task new keys.
    await service.tasks.complete_task(
        wpb.CompleteTaskRequest(
            task_id=task.id,
            lease_token=task.lease_token,
            error=job_pb2.JobError(code="ENCODE_FAILED", message="x264 gave up"),
        )
    )
    await service.jobs.retry(ORG, job_id)
    _, again = await encrypted_transcode(service, job_id)
    renewed = list(again.encryption.keys)
    assert len(renewed) == 3
    assert not {key.key for key in renewed} & {key.key for key in keys}
    assert {generation for generation, _, _ in await stored_keys(service)} == {2}
    assert await service.content_keys.key(job_id, output_id, 1, first.key_id.hex()) is None
    shown = (await service.jobs.get(ORG, job_id)).outputs[0].encryption
    assert list(shown.key_ids) == [key.key_id.hex() for key in renewed]


async def test_delete_outputs_deletes_the_outputs_keys(service: Services):
    """DeleteOutputs takes the job's sealed keys with its files (another job's stay), and the
    key endpoint's lookup then finds none."""
    job_id, task = await encrypted_transcode(service)
    _, kept = await encrypted_transcode(service)
    first = task.encryption.keys[0]
    await service.tasks.complete_task(service.finished(task))
    assert await service.content_keys.key(job_id, task.output_id, 1, first.key_id.hex())
    job, _ = await service.jobs.delete_outputs(ORG, job_id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED
    assert await service.content_keys.key(job_id, task.output_id, 1, first.key_id.hex()) is None
    left = await stored_keys(service)
    assert [key_id for _, key_id, _ in left] == [key.key_id.hex() for key in kept.encryption.keys]
    async with service.store.transaction() as tx:
        assert await tx.content_keys.delete_keys_of([task.output_id]) == 0
