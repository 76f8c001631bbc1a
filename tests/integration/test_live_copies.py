"""A chunked MPEG-TS ladder's live copies over a real store (SQLite and PostgreSQL) and local
storage: the due-removal query, the time a completing job gives them, and their removal by
the sweep's step (server.jobs.live_copies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.storage.local import LocalStorage
from common.storage.origins import Origins
from server.domain import ids
from server.domain.states import JobStatus, OutputStatus, TaskKind, TaskStatus
from server.jobs import live_copies
from server.jobs.live_copies import LiveCopies
from server.store.database import aware
from server.store.models import Job, Output, Task
from server.store.store import Store, now
from tests.support.rows import make_job, make_outputs

BASE_TIME = datetime(2030, 1, 1, tzinfo=UTC)

# A two-segment, one-variant ladder as its merge leaves it: the final (muxed) ladder, and the
# live one its pieces made.
FINAL = ["master.m3u8", "v0/muxed.m3u8", "v0/muxed_00000.ts", "v0/muxed_00001.ts"]
LIVE = [
    "v0/index.m3u8",
    "v0/seg_00000.ts",
    "v0/seg_00001.ts",
    "audio/index.m3u8",
    "audio/seg_00000.ts",
    "audio/seg_00001.ts",
]


def ts_ladder() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="160x90")],
    )


def files(paths: list[str]) -> list[job_pb2.OutputFile]:
    return [job_pb2.OutputFile(path=path, size_bytes=100) for path in paths]


def piece(job: Job, output: Output, kind: TaskKind, index: int, paths: list[str]) -> Task:
    """A piece as the server accepted it: DONE, its files and rendition in its result."""
    name = paths[0].split("/")[0]
    result = wpb.ChunkResult(
        files=files(paths),
        renditions=[wpb.RenditionPart(name=name, segments=[wpb.Segment(path=paths[0])])],
    )
    return Task(
        id=ids.task_id(),
        job_id=job.id,
        output_id=output.id,
        kind=str(kind),
        status=str(TaskStatus.DONE),
        priority=job.priority,
        attempts=1,
        lease_token=1,
        worker_id="w",
        created_at=now(),
        chunk_index=index,
        result=result.SerializeToString(),
    )


async def add_job(
    store: Store,
    status: JobStatus,
    *,
    due: datetime | None = None,
    spec: job_pb2.OutputSpec | None = None,
    result: list[str] | None = None,
    input_seconds: float = 60.0,
    output_status: OutputStatus = OutputStatus.COMPLETED,
) -> tuple[Job, Output]:
    """A job of one output, with the pieces of a chunked ladder when it lists files."""
    job = make_job(status=status)
    job.input_info = job_pb2.InputInfo(duration_seconds=input_seconds).SerializeToString()
    [output] = make_outputs(job, 1)
    output.spec = (spec or ts_ladder()).SerializeToString()
    output.status = str(output_status)
    output.live_copies_due_at = due
    if result is not None:
        output.result = wpb.TranscodeResult(files=files(result)).SerializeToString()
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(job.organization_id)
        await tx.jobs.insert_job(job, [output])
        if result is not None:
            await tx.tasks.insert_tasks(
                [
                    piece(job, output, TaskKind.CHUNK, 0, ["v0/seg_00000.ts"]),
                    piece(job, output, TaskKind.CHUNK, 1, ["v0/seg_00001.ts"]),
                    piece(
                        job,
                        output,
                        TaskKind.AUDIO,
                        0,
                        ["audio/seg_00000.ts", "audio/seg_00001.ts"],
                    ),
                ]
            )
    return job, output


async def due_now(store: Store, moment: datetime, limit: int = 10) -> list[str]:
    async with store.reading() as tx:
        return [output_id for _, output_id in await tx.outputs.live_copies_due(moment, limit)]


async def test_the_due_query_lists_completed_outputs_due_longest_first(store):
    _, earlier = await add_job(store, JobStatus.COMPLETED, due=BASE_TIME - timedelta(minutes=2))
    _, later = await add_job(store, JobStatus.COMPLETED, due=BASE_TIME - timedelta(minutes=1))
    _, exactly = await add_job(store, JobStatus.COMPLETED, due=BASE_TIME)
    # A COMPLETED output of a PARTIAL job, and of one a Retry runs again (its other outputs):
    # final all the same.
    _, of_partial = await add_job(store, JobStatus.PARTIAL, due=BASE_TIME - timedelta(hours=1))
    _, retried = await add_job(store, JobStatus.PROCESSING, due=BASE_TIME - timedelta(minutes=30))
    # Not yet due, given no time, or an output that is not COMPLETED: never listed.
    await add_job(store, JobStatus.COMPLETED, due=BASE_TIME + timedelta(seconds=1))
    await add_job(store, JobStatus.COMPLETED, due=None)
    for status in (OutputStatus.FAILED, OutputStatus.PENDING, OutputStatus.CANCELED):
        await add_job(
            store, JobStatus.PARTIAL, due=BASE_TIME - timedelta(hours=2), output_status=status
        )

    every = [of_partial.id, retried.id, earlier.id, later.id, exactly.id]
    assert await due_now(store, BASE_TIME) == every
    assert await due_now(store, BASE_TIME, limit=2) == every[:2]
    assert await due_now(store, BASE_TIME - timedelta(hours=3)) == []

    async with store.transaction() as tx:
        await tx.outputs.live_copies_removed(of_partial.id)
    assert await due_now(store, BASE_TIME) == every[1:]


@pytest.mark.parametrize(
    ("setting", "input_seconds", "grace"),
    [
        # Unset: the larger of 10 minutes and twice the output.
        (None, 60.0, 600.0),
        (None, 1800.0, 3600.0),
        # Set: that long, whatever the output's length.
        (5.0, 1800.0, 5.0),
        # 0: kept for ever.
        (0.0, 60.0, None),
    ],
)
async def test_a_completing_job_gives_its_live_copies_their_time(
    store, setting, input_seconds, grace
):
    every = FINAL + LIVE
    job, _ = await add_job(store, JobStatus.PROCESSING, result=every, input_seconds=input_seconds)
    # Without live copies to remove: an fMP4 ladder, and an MP4.
    fmp4 = ts_ladder()
    fmp4.hls.segment_format = job_pb2.HLS_SEGMENT_FORMAT_FMP4
    _, other = await add_job(store, JobStatus.PROCESSING, spec=fmp4, result=every)
    moment = BASE_TIME
    async with store.transaction() as tx:
        record = await tx.jobs.get_job(None, job.id, lock=True)
        await live_copies.schedule_removal(tx, record, moment, setting)
        other_record = await tx.jobs.get_job(None, other.job_id, lock=True)
        await live_copies.schedule_removal(tx, other_record, moment, setting)
    async with store.reading() as tx:
        [stored] = (await tx.jobs.get_job(None, job.id)).outputs
        [untouched] = (await tx.jobs.get_job(None, other.job_id)).outputs
    expected = None if grace is None else moment + timedelta(seconds=grace)
    assert aware(stored.live_copies_due_at) == expected
    assert untouched.live_copies_due_at is None


async def test_an_ending_job_gives_only_its_completed_outputs_a_time(store):
    """Whatever the job's end, a COMPLETED output is final (a Retry runs the others): its live
    copies get their time; an output that did not complete keeps its pieces for the Retry.
    (That every end schedules: tests/e2e/test_live_copies.py, through a PARTIAL job.)"""
    every = FINAL + LIVE
    job, completed = await add_job(store, JobStatus.PROCESSING, result=every)
    _, failed = await add_job(
        store, JobStatus.PROCESSING, result=every, output_status=OutputStatus.FAILED
    )
    # Given a time by an earlier end (a PARTIAL job retried): the grace counts from then.
    earlier = BASE_TIME - timedelta(hours=1)
    _, kept_time = await add_job(store, JobStatus.PROCESSING, due=earlier, result=every)
    # Its live copies already removed (the live playlists gone from its files): no new time.
    _, removed = await add_job(store, JobStatus.PROCESSING, result=FINAL)
    async with store.transaction() as tx:
        for each in (job.id, failed.job_id, kept_time.job_id, removed.job_id):
            record = await tx.jobs.get_job(None, each, lock=True)
            await live_copies.schedule_removal(tx, record, BASE_TIME, None)

    async def due_of(output: Output) -> datetime | None:
        async with store.reading() as tx:
            [row] = (await tx.jobs.get_job(None, output.job_id)).outputs
        return aware(row.live_copies_due_at)

    assert await due_of(completed) == BASE_TIME + timedelta(seconds=600)
    assert await due_of(failed) is None
    assert await due_of(kept_time) == earlier
    assert await due_of(removed) is None


def write_files(storage: LocalStorage, job: Job, output: Output, paths: list[str]) -> None:
    for path in paths:
        target = storage.path_for(f"{job.id}/{output.id}/{path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\0" * 100)


def stored(storage: LocalStorage, job: Job, output: Output) -> set[str]:
    return set(storage.stored_sizes(f"{job.id}/{output.id}"))


async def listed(store: Store, output: Output) -> tuple[list[str], list[str], datetime | None]:
    async with store.reading() as tx:
        [row] = (await tx.jobs.get_job(None, output.job_id)).outputs
    result = wpb.TranscodeResult.FromString(row.result or b"")
    return [f.path for f in result.files], list(result.notes), row.live_copies_due_at


async def test_the_sweep_removes_due_live_copies_from_storage_and_the_result(
    store, database_url: str, tmp_path: Path
):
    storage = LocalStorage(tmp_path / "storage")
    due = now() - timedelta(seconds=1)
    job, output = await add_job(store, JobStatus.COMPLETED, due=due, result=FINAL + LIVE)
    later_job, later = await add_job(
        store, JobStatus.COMPLETED, due=now() + timedelta(hours=1), result=FINAL + LIVE
    )
    for each_job, each in ((job, output), (later_job, later)):
        write_files(storage, each_job, each, FINAL + LIVE)

    # Set to 0 (keep them): nothing is removed, not even what is due.
    assert await LiveCopies(store, Origins(storage), 0.0).remove_due() == 0
    assert stored(storage, job, output) == set(FINAL + LIVE)

    # A sweep of another Store on the same database (a restarted server) finds the time.
    other = Store(database_url)
    try:
        assert await LiveCopies(other, Origins(storage), None).remove_due() == 1
    finally:
        await other.close()
    assert stored(storage, job, output) == set(FINAL)
    paths, notes, left = await listed(store, output)
    assert paths == FINAL and left is None
    assert notes == [f"live copies removed after the grace: {len(LIVE)} files"]
    # The output not yet due keeps everything.
    assert stored(storage, later_job, later) == set(FINAL + LIVE)
    assert (await listed(store, later))[0] == FINAL + LIVE
    # Nothing is due any more.
    assert await LiveCopies(store, Origins(storage), None).remove_due() == 0


async def test_a_removal_cut_short_is_finished_by_the_next_round(store, tmp_path: Path):
    """Cut after the result lost the files and before storage did: the time is still set,
    and the next round deletes them (from the pieces' reports, not the result's list)."""
    storage = LocalStorage(tmp_path / "storage")
    job, output = await add_job(
        store, JobStatus.COMPLETED, due=now() - timedelta(seconds=1), result=FINAL
    )
    write_files(storage, job, output, FINAL + LIVE)
    assert await LiveCopies(store, Origins(storage), None).remove_due() == 1
    assert stored(storage, job, output) == set(FINAL)
    paths, notes, left = await listed(store, output)
    assert paths == FINAL and notes == [] and left is None


async def test_delete_outputs_leaves_nothing_due(store, service):
    """DeleteOutputs removes every file: the output's time goes with them."""
    job, output = await add_job(
        store, JobStatus.COMPLETED, due=now() + timedelta(hours=1), result=FINAL + LIVE
    )
    assert await due_now(store, now() + timedelta(hours=2)) == [output.id]
    await service.jobs.delete_outputs(job.organization_id, job.id)
    paths, notes, left = await listed(store, output)
    assert paths == [] and notes == ["output files deleted"] and left is None
    assert await due_now(store, now() + timedelta(hours=2)) == []
