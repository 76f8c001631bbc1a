"""Image series, sprites and GIFs against the real ffmpeg on a 7 s 640x360 30 fps source."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kiln.v1 import job_pb2

from worker.media.commands import build_command
from worker.media.ffmpeg import run_ffmpeg
from worker.media.packaging import finalize_output
from worker.media.plan import CommandPlan
from worker.media.probe import probe

SOURCE_SECONDS = 7.0


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("image-sources") / "source.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-t",
            str(SOURCE_SECONDS),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


async def produce(source: Path, spec: job_pb2.OutputSpec, out_dir: Path) -> CommandPlan:
    info = await probe(str(source))
    plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)
    await run_ffmpeg(
        plan.argv, duration=plan.expected_duration, on_progress=None, cancel_event=asyncio.Event()
    )
    plan.notes += await finalize_output(spec, info, out_dir, plan)
    return plan


def video_stream(path: Path, *, count_frames: bool = False) -> dict[str, Any]:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            *(["-count_frames"] if count_frames else []),
            "-select_streams",
            "v:0",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    parsed = json.loads(result.stdout)
    return {**parsed["streams"][0], "format": parsed["format"]}


def test_interval_thumbnails_one_per_interval(source: Path, tmp_path: Path) -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_JPG,
        thumbnail=job_pb2.ThumbnailSpec(
            mode=job_pb2.THUMBNAIL_MODE_INTERVAL, interval_seconds=2, width=160
        ),
    )

    plan = asyncio.run(produce(source, spec, tmp_path))

    produced = sorted(tmp_path.iterdir())
    # At 0, 2, 4 and 6 s of 7 s.
    assert [path.name for path in produced] == [f"thumb_000{n}.jpg" for n in range(1, 5)]
    assert produced == plan.outputs
    for path in produced:
        stream = video_stream(path)
        assert (stream["width"], stream["height"]) == (160, 90)
    # testsrc2 moves, so frames 2 s apart are different pictures.
    assert len({path.read_bytes() for path in produced}) == 4


def test_timestamp_thumbnails_one_per_time_at_the_asked_size(source: Path, tmp_path: Path) -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_PNG,
        thumbnail=job_pb2.ThumbnailSpec(
            mode=job_pb2.THUMBNAIL_MODE_TIMESTAMPS,
            timestamps_seconds=[0.5, 3, 6.99, 30],
            width=320,
        ),
    )

    plan = asyncio.run(produce(source, spec, tmp_path))

    produced = sorted(tmp_path.iterdir())
    assert [path.name for path in produced] == [f"thumb_000{n}.png" for n in range(1, 5)]
    for path in produced:
        stream = video_stream(path)
        assert (stream["width"], stream["height"]) == (320, 180)
    # The two past the last frame both get the last frame rather than nothing.
    assert len(plan.notes) == 2
    assert produced[2].read_bytes() == produced[3].read_bytes()
    assert produced[0].read_bytes() != produced[1].read_bytes()


def test_sprite_grid_and_vtt_cover_the_whole_input(source: Path, tmp_path: Path) -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_JPG,
        thumbnail=job_pb2.ThumbnailSpec(
            mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=1, columns=3
        ),
    )

    asyncio.run(produce(source, spec, tmp_path))

    assert sorted(path.name for path in tmp_path.iterdir()) == ["sprite.jpg", "sprite.vtt"]
    sheet = video_stream(tmp_path / "sprite.jpg")
    # 7 tiles of 160x90 in rows of 3: three rows.
    assert (sheet["width"], sheet["height"]) == (480, 270)

    text = (tmp_path / "sprite.vtt").read_text()
    assert text.startswith("WEBVTT\n\n")
    cues = re.findall(
        r"(\d\d):(\d\d):(\d\d\.\d\d\d) --> (\d\d):(\d\d):(\d\d\.\d\d\d)\n"
        r"sprite\.jpg#xywh=(\d+),(\d+),(\d+),(\d+)",
        text,
    )
    assert len(cues) == 7

    def seconds(hours: str, minutes: str, rest: str) -> float:
        return int(hours) * 3600 + int(minutes) * 60 + float(rest)

    previous_end = 0.0
    rectangles = set()
    for cue in cues:
        start, end = seconds(*cue[0:3]), seconds(*cue[3:6])
        x, y, width, height = map(int, cue[6:10])
        assert start == pytest.approx(previous_end)
        assert end > start
        assert (width, height) == (160, 90)
        assert x + width <= sheet["width"]
        assert y + height <= sheet["height"]
        rectangles.add((x, y))
        previous_end = end
    assert previous_end == pytest.approx(SOURCE_SECONDS)
    assert len(rectangles) == 7


def test_gif_is_animated_at_the_asked_width_for_the_clip(source: Path, tmp_path: Path) -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_GIF,
        clip=job_pb2.ClipSpec(start_seconds=1, duration_seconds=2),
        thumbnail=job_pb2.ThumbnailSpec(width=240),
    )

    plan = asyncio.run(produce(source, spec, tmp_path))

    stream = video_stream(plan.outputs[0], count_frames=True)
    assert stream["codec_name"] == "gif"
    assert (stream["width"], stream["height"]) == (240, 136)
    assert int(stream["nb_read_frames"]) == 20  # 2 s at 10 fps
    assert float(stream["format"]["duration"]) == pytest.approx(2.0, abs=0.11)
