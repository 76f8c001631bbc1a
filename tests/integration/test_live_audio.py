"""A chunked HLS, DASH or CMAF output's AUDIO piece reports its segments while it runs, over a
real store (SQLite and PostgreSQL): the live master (and the dynamic MPD) appears once the
first chunk and the audio's first segment are stored, before the audio is done; a report the
server cannot trust is refused."""

from __future__ import annotations

import pytest
from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.domain.errors import InvalidArgument
from server.jobs.chunk_plan import ChunkSettings
from tests.support import ORG
from tests.support.wiring import Services

SEGMENT_BYTES = 188 * 10


def hls_request(input_url: str) -> job_service_pb2.CreateRequest:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
    )
    return job_service_pb2.CreateRequest(input_url=input_url, outputs=[spec])


def probed_with_audio(probe: wpb.Task) -> wpb.CompleteTaskRequest:
    info = job_pb2.InputInfo(
        duration_seconds=2.0,
        streams=[
            job_pb2.StreamInfo(kind="video", codec="h264", width=640, height=360, frame_rate=30.0),
            job_pb2.StreamInfo(index=1, kind="audio", codec="aac", channels=1, sample_rate=48000),
        ],
    )
    return wpb.CompleteTaskRequest(task_id=probe.id, lease_token=probe.lease_token, input_info=info)


def store(service: Services, task: wpb.Task, path: str) -> None:
    target = service.storage.path_for(f"{task.output_prefix}/{path}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x47" * SEGMENT_BYTES)


def audio_so_far(task: wpb.Task, *paths: str) -> wpb.ReportProgressRequest:
    part = wpb.RenditionPart(
        name="audio",
        codec="mp4a.40.2",
        segments=[
            wpb.Segment(path=p, duration_seconds=1.0, size_bytes=SEGMENT_BYTES) for p in paths
        ],
    )
    return wpb.ReportProgressRequest(
        task_id=task.id, lease_token=task.lease_token, progress=10, audio_so_far=part
    )


def first_chunk_done(task: wpb.Task) -> wpb.CompleteTaskRequest:
    segment = wpb.Segment(path="v0/seg_00000.ts", duration_seconds=1.0, size_bytes=SEGMENT_BYTES)
    result = wpb.ChunkResult(
        files=[job_pb2.OutputFile(path=segment.path, size_bytes=SEGMENT_BYTES)],
        encoded_seconds=1.0,
        frame_count=30,
        renditions=[
            wpb.RenditionPart(
                name="v0", codec="avc1.64000d", width=426, height=240, frame_rate=30,
                segments=[segment],
            )
        ],
    )  # fmt: skip
    return wpb.CompleteTaskRequest(task_id=task.id, lease_token=task.lease_token, chunk=result)


async def files_of(service: Services, job_id: str) -> set[str]:
    return {f.path for f in (await service.jobs.get(ORG, job_id)).outputs[0].files}


async def test_the_audio_so_far_makes_the_output_playable_before_it_ends(service: Services):
    service.life.chunking = ChunkSettings(threshold_seconds=1, chunk_seconds=1)
    async with service.store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
    job = await service.jobs.create(ORG, hls_request(service.input_url), "")
    await service.tasks.complete_task(probed_with_audio(await service.claim()))
    audio, first, second = [await service.claim() for _ in range(3)]
    # Claimed in this order: the audio, the first chunk, then the rest.
    assert [audio.kind, first.kind, second.kind] == [wpb.TASK_KIND_AUDIO] + [
        wpb.TASK_KIND_CHUNK
    ] * 2
    assert (first.chunk.index, second.chunk.index) == (0, 1)

    store(service, first, "v0/seg_00000.ts")
    await service.tasks.complete_task(first_chunk_done(first))
    # The audio has no segment yet: no master (it names the audio rendition).
    assert "master.m3u8" not in await files_of(service, job.id)

    store(service, audio, "audio/seg_00000.ts")
    bad_reports = {
        "not stored": audio_so_far(audio, "audio/seg_00000.ts", "audio/seg_00001.ts"),
        "a gap": audio_so_far(audio, "audio/seg_00001.ts"),
        "another rendition's": audio_so_far(audio, "v0/seg_00000.ts"),
        "from a chunk": audio_so_far(second, "audio/seg_00000.ts"),
    }
    bad_reports["no codec"] = audio_so_far(audio, "audio/seg_00000.ts")
    bad_reports["no codec"].audio_so_far.codec = ""
    bad_reports["zero bytes"] = audio_so_far(audio, "audio/seg_00000.ts")
    bad_reports["zero bytes"].audio_so_far.segments[0].size_bytes = 0
    for what, report in bad_reports.items():
        with pytest.raises(InvalidArgument):
            await service.tasks.report_progress(report)
        assert "master.m3u8" not in await files_of(service, job.id), what

    assert await service.tasks.report_progress(audio_so_far(audio, "audio/seg_00000.ts")) is False
    files = await files_of(service, job.id)
    assert {"master.m3u8", "v0/index.m3u8", "audio/index.m3u8", "audio/seg_00000.ts"} <= files
    # The same list again, or a shorter one (a rerun starting over), changes nothing.
    await service.tasks.report_progress(audio_so_far(audio, "audio/seg_00000.ts"))
    assert await files_of(service, job.id) == files
    listed = await service.jobs.get(ORG, job.id)
    assert listed.status == job_pb2.JOB_STATUS_PROCESSING


# --- fMP4 (DASH here; fMP4 HLS and CMAF are checked alike) --------------------------------------

SCALE, RATE = 15360, 48000
INIT_BYTES = 700
DIGEST = "ab" * 32


def dash_request(input_url: str) -> job_service_pb2.CreateRequest:
    request = hls_request(input_url)
    request.outputs[0].type = job_pb2.OUTPUT_TYPE_DASH
    return request


def store_bytes(service: Services, task: wpb.Task, path: str, size: int) -> None:
    target = service.storage.path_for(f"{task.output_prefix}/{path}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\0" * size)


def fmp4_audio_so_far(task: wpb.Task, count: int) -> wpb.ReportProgressRequest:
    """`count` 1 s segments of 48 kHz audio after the init segment, as the worker reads them."""
    part = wpb.RenditionPart(
        name="audio",
        codec="mp4a.40.2",
        segments=[
            wpb.Segment(
                path=f"audio/seg_{n:05d}.m4s", duration_seconds=1.0, size_bytes=SEGMENT_BYTES
            )
            for n in range(count)
        ],
        init_path="audio/init.mp4",
        init_sha256=DIGEST,
        init_size_bytes=INIT_BYTES,
        timescale=RATE,
        decode_times=[n * RATE for n in range(count)],
        decode_durations=[RATE] * count,
    )
    return wpb.ReportProgressRequest(
        task_id=task.id, lease_token=task.lease_token, progress=10, audio_so_far=part
    )


def first_fmp4_chunk_done(task: wpb.Task) -> wpb.CompleteTaskRequest:
    segment = wpb.Segment(path="v0/seg_00000.m4s", duration_seconds=1.0, size_bytes=SEGMENT_BYTES)
    result = wpb.ChunkResult(
        files=[
            job_pb2.OutputFile(path=segment.path, size_bytes=SEGMENT_BYTES),
            job_pb2.OutputFile(path="v0/init.mp4", size_bytes=INIT_BYTES),
        ],
        encoded_seconds=1.0,
        frame_count=30,
        renditions=[
            wpb.RenditionPart(
                name="v0", codec="avc1.64000d", width=426, height=240, frame_rate=30,
                segments=[segment], init_path="v0/init.mp4", init_sha256=DIGEST,
                timescale=SCALE, decode_times=[0], decode_durations=[SCALE],
            )
        ],
    )  # fmt: skip
    return wpb.CompleteTaskRequest(task_id=task.id, lease_token=task.lease_token, chunk=result)


async def test_fmp4_audio_so_far_comes_with_its_init_segment(service: Services):
    service.life.chunking = ChunkSettings(threshold_seconds=1, chunk_seconds=1)
    async with service.store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
    job = await service.jobs.create(ORG, dash_request(service.input_url), "")
    await service.tasks.complete_task(probed_with_audio(await service.claim()))
    audio, first = await service.claim(), await service.claim()
    assert (audio.kind, first.kind) == (wpb.TASK_KIND_AUDIO, wpb.TASK_KIND_CHUNK)
    store_bytes(service, first, "v0/seg_00000.m4s", SEGMENT_BYTES)
    store_bytes(service, first, "v0/init.mp4", INIT_BYTES)
    await service.tasks.complete_task(first_fmp4_chunk_done(first))
    # The audio has no segment yet: no MPD (its audio set could not be added later).
    assert "manifest.mpd" not in await files_of(service, job.id)

    for n in range(2):
        store_bytes(service, audio, f"audio/seg_{n:05d}.m4s", SEGMENT_BYTES)
    # The init segment is not stored yet: nothing may be listed.
    with pytest.raises(InvalidArgument):
        await service.tasks.report_progress(fmp4_audio_so_far(audio, 1))
    store_bytes(service, audio, "audio/init.mp4", INIT_BYTES)
    bad_reports = {name: fmp4_audio_so_far(audio, 2) for name in ("gap", "size", "outside")}
    bad_reports["gap"].audio_so_far.decode_times[1] += 1
    bad_reports["size"].audio_so_far.init_size_bytes = INIT_BYTES + 1
    bad_reports["outside"].audio_so_far.init_path = "../init.mp4"
    bad_reports["no init"] = fmp4_audio_so_far(audio, 1)
    bad_reports["no init"].audio_so_far.ClearField("init_path")
    bad_reports["ts names"] = audio_so_far(audio, "audio/seg_00000.ts")
    for what, report in bad_reports.items():
        with pytest.raises(InvalidArgument):
            await service.tasks.report_progress(report)
        assert "manifest.mpd" not in await files_of(service, job.id), what

    await service.tasks.report_progress(fmp4_audio_so_far(audio, 1))
    files = await files_of(service, job.id)
    assert {"manifest.mpd", "audio/init.mp4", "audio/seg_00000.m4s", "v0/init.mp4"} <= files
    assert "audio/seg_00001.m4s" not in files
    # Another init segment than the one taken (a rerun's would be the same bytes): ignored.
    other = fmp4_audio_so_far(audio, 2)
    other.audio_so_far.init_sha256 = "cd" * 32
    await service.tasks.report_progress(other)
    assert "audio/seg_00001.m4s" not in await files_of(service, job.id)
    await service.tasks.report_progress(fmp4_audio_so_far(audio, 2))
    assert "audio/seg_00001.m4s" in await files_of(service, job.id)
    listed = await service.jobs.get(ORG, job.id)
    assert listed.status == job_pb2.JOB_STATUS_PROCESSING
