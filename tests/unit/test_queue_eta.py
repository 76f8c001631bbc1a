"""The ETA of waiting work: kinds of output, a worker's measured speeds, the fleet's speed,
and the queue played forward over the fleet's slots."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.speed_classes import known_classes, speed_class
from server.domain.errors import FieldViolation
from server.domain.states import WorkerState
from server.jobs.fleet import FleetMember, speeds_from
from server.jobs.queue_eta import FleetSpeed, fleet_speed, output_finishes
from server.store.queue_outlook import QueuedWork
from server.store.workers import WorkerRecord
from worker.speeds import SpeedBook

MOMENT = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
H264 = job_pb2.VIDEO_CODEC_H264


def source(width: int = 1920, height: int = 1080, rotation: int = 0, seconds: float = 60.0):
    return job_pb2.InputInfo(
        duration_seconds=seconds,
        streams=[
            job_pb2.StreamInfo(kind="video", width=width, height=height, rotation=rotation),
            job_pb2.StreamInfo(kind="audio"),
        ],
    )


def mp4(
    *resolutions: str, codec: job_pb2.VideoCodec = H264, upscale: bool = False
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[
            job_pb2.VideoVariant(codec=codec, resolution=r, allow_upscale=upscale)
            for r in resolutions
        ],
    )


def test_a_kind_is_the_codec_and_the_tallest_encoded_height_rounded_up():
    assert speed_class(mp4("720p"), source()) == "h264/720"
    assert speed_class(mp4("480p", "1080p", "720p"), source()) == "h264/1080"
    assert speed_class(mp4("1280x544"), source()) == "h264/720"
    assert speed_class(mp4("720p", codec=job_pb2.VIDEO_CODEC_AV1), source()) == "av1/720"
    # Above the source: encoded at the source's height unless upscaling is allowed.
    assert speed_class(mp4("1080p"), source(1280, 720)) == "h264/720"
    assert speed_class(mp4("1080p", upscale=True), source(1280, 720)) == "h264/1080"
    # A portrait phone video (rotated 90) is shown 1920 high.
    assert speed_class(mp4("2160p"), source(1920, 1080, rotation=90)) == "h264/2160"
    assert speed_class(mp4("8000p", upscale=True), source()) == "h264/4320"
    audio = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A)
    image = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_JPG)
    custom = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4, custom=job_pb2.CustomCommand())
    assert [speed_class(s, source()) for s in (audio, image, custom)] == [
        "audio",
        "image",
        "custom",
    ]


def test_every_kind_a_worker_can_name_is_one_the_server_takes():
    classes = known_classes()
    for codec in job_pb2.VideoCodec.values():
        for height in (100, 240, 500, 1080, 3000, 9000):
            spec = mp4(f"{height}p", codec=codec, upscale=True)
            assert speed_class(spec, source()) in classes
    assert "h264/721" not in classes and "" not in classes


def transcode(spec: job_pb2.OutputSpec, info: job_pb2.InputInfo | None = None) -> wpb.Task:
    return wpb.Task(
        kind=wpb.TASK_KIND_TRANSCODE, output_spec=spec, input_info=info or source(1280, 720)
    )


def test_a_worker_announces_the_median_of_its_recent_tasks_per_kind():
    book = SpeedBook()
    task = transcode(mp4("720p"))
    for wall in (10.0, 20.0, 40.0, 1000.0, 5.0, 8.0):
        assert book.record(task, 20.0, wall)
    # The last five: 2, 1, 0.5, 0.02, 4 (the first fell out); their median is 1.
    assert [(s.speed_class, s.realtime_factor, s.samples) for s in book.speeds()] == [
        ("h264/720", 1.0, 5)
    ]
    # A probe or a merge encodes nothing; no media or no time measures nothing.
    assert not book.record(wpb.Task(kind=wpb.TASK_KIND_PROBE), 20.0, 1.0)
    assert not book.record(wpb.Task(kind=wpb.TASK_KIND_MERGE), 20.0, 1.0)
    assert not book.record(task, 0.0, 1.0)
    assert not book.record(task, 10.0, 0.0)
    # An AUDIO piece is audio whatever its output; an absurdly fast one is capped.
    assert book.record(wpb.Task(kind=wpb.TASK_KIND_AUDIO, output_spec=mp4("720p")), 1e9, 1.0)
    assert [(s.speed_class, s.realtime_factor) for s in book.speeds()] == [
        ("audio", 1000.0),
        ("h264/720", 1.0),
    ]


def announced(
    *speeds: wpb.EncodeSpeed,
) -> tuple[dict[str, float], dict[str, str]]:
    violations: list[FieldViolation] = []
    taken = speeds_from(list(speeds), violations)
    return taken, {v.field: v.description for v in violations}


@pytest.mark.parametrize("factor", [-1.0, 0.0, math.nan, math.inf, -math.inf, 1000.5, 1e300])
def test_an_absurd_speed_is_refused(factor):
    _, violations = announced(
        wpb.EncodeSpeed(speed_class="h264/720", realtime_factor=factor, samples=3)
    )
    assert list(violations) == ["speeds[0].realtime_factor"]


def test_a_speed_of_no_known_kind_or_twice_is_refused():
    good = wpb.EncodeSpeed(speed_class="h264/720", realtime_factor=2.5, samples=3)
    assert announced(good) == ({"h264/720": 2.5}, {})
    _, violations = announced(
        good,
        wpb.EncodeSpeed(speed_class="h264/721", realtime_factor=1.0, samples=1),
        wpb.EncodeSpeed(speed_class="h264/720", realtime_factor=1.0, samples=1),
        wpb.EncodeSpeed(speed_class="audio", realtime_factor=1.0, samples=0),
    )
    assert set(violations) == {
        "speeds[1].speed_class",
        "speeds[2].speed_class",
        "speeds[3].samples",
    }
    _, violations = announced(*[good] * 65)
    assert list(violations) == ["speeds"]


def member(state: WorkerState, capacity: int, **speeds: float) -> FleetMember:
    record = WorkerRecord(
        id=f"w{capacity}{state}",
        host="h",
        version="v",
        capacity=capacity,
        task_kinds=[],
        encoders=[],
        state=state if state != WorkerState.LOST else WorkerState.ACTIVE,
        started_at=MOMENT,
        last_contact_at=MOMENT,
        running_tasks=0,
        speeds={name.replace("_", "/"): factor for name, factor in speeds.items()},
    )
    return FleetMember(record, state)


def test_the_fleet_counts_active_slots_and_the_median_speed_of_workers_still_heard():
    fleet = fleet_speed(
        [
            member(WorkerState.ACTIVE, 2, h264_720=1.0),
            member(WorkerState.ACTIVE, 4, h264_720=3.0, audio=50.0),
            # Draining: takes nothing new, but what it measured still holds.
            member(WorkerState.DRAINING, 8, h264_720=2.5),
            # Lost: neither.
            member(WorkerState.LOST, 16, h264_720=100.0),
        ]
    )
    assert fleet.slots == 6
    assert dict(fleet.realtime_factors) == {"h264/720": 2.5, "audio": 50.0}


def work(
    output_id: str,
    seconds: float = 60.0,
    *,
    leased: bool = False,
    progress: float = 0.0,
    running_for: float | None = None,
    spec: job_pb2.OutputSpec | None = None,
    kind: str = "TRANSCODE",
    chunk: tuple[float, float] | None = None,
) -> QueuedWork:
    piece = None
    if chunk is not None:
        piece = wpb.ChunkRange(start_seconds=chunk[0], end_seconds=chunk[1]).SerializeToString()
    return QueuedWork(
        task_id=f"t-{output_id}-{chunk}",
        job_id="j",
        output_id=output_id,
        kind=kind,
        leased=leased,
        task_progress=progress if kind != "TRANSCODE" else 0.0,
        chunk=piece,
        spec=(spec or mp4("720p")).SerializeToString(),
        input_info=source(1280, 720, seconds=seconds).SerializeToString(),
        output_progress=progress,
        running_since=None if running_for is None else MOMENT - timedelta(seconds=running_for),
    )


FLEET = FleetSpeed(slots=2, realtime_factors={"h264/720": 2.0})


def test_queued_outputs_wait_for_the_slot_that_frees_first():
    # Two slots, 60 s outputs at twice real time: 30 s each.
    queue = [work("a", leased=True), work("b", leased=True), work("c"), work("d"), work("e")]
    assert output_finishes(queue, FLEET, MOMENT) == {
        "a": 30.0,
        "b": 30.0,
        "c": 60.0,
        "d": 60.0,
        "e": 90.0,
    }
    # Half done, and one with a rate of its own already (50 % in 40 s: 40 s left).
    queue = [
        work("a", leased=True, progress=50.0),
        work("b", leased=True, progress=50.0, running_for=40.0),
        work("c"),
    ]
    assert output_finishes(queue, FLEET, MOMENT) == {"a": 15.0, "b": 40.0, "c": 45.0}


def test_a_chunked_output_ends_with_its_last_piece():
    fleet = FleetSpeed(slots=3, realtime_factors={"h264/720": 2.0})
    queue = [
        work("a", kind="CHUNK", chunk=(0.0, 20.0)),
        work("a", kind="CHUNK", chunk=(20.0, 40.0)),
        work("a", kind="CHUNK", chunk=(40.0, 60.0)),
        # Audio unmeasured: short beside the video, counted as nothing.
        work("a", kind="AUDIO"),
        work("a", kind="CHUNK", chunk=(60.0, 70.0)),
    ]
    assert output_finishes(queue, fleet, MOMENT) == {"a": 15.0}


def test_an_unmeasured_kind_leaves_itself_and_all_behind_it_unknown():
    vp9 = mp4("720p", codec=job_pb2.VIDEO_CODEC_VP9)
    queue = [work("a", leased=True), work("b", spec=vp9), work("c"), work("d")]
    assert output_finishes(queue, FLEET, MOMENT) == {"a": 30.0, "b": None, "c": None, "d": None}
    # No slot anywhere: nothing can be told.
    assert output_finishes([work("a")], FleetSpeed(0, {"h264/720": 2.0}), MOMENT) == {}
    # A job not yet probed has no length.
    unprobed = QueuedWork(**{**work("a").__dict__, "input_info": None})
    assert output_finishes([unprobed], FLEET, MOMENT) == {"a": None}
