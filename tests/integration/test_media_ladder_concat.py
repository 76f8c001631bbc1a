"""Concatenation of several inputs against the real ffmpeg."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kiln.v1 import job_pb2

from worker.media.commands import build_command
from worker.media.ffmpeg import run_ffmpeg
from worker.media.plan import CommandPlan
from worker.media.probe import probe


def make_media(path: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args, str(path)],
        check=True,
        timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("concat-sources")
    fast = ["-c:v", "libx264", "-preset", "ultrafast"]
    return [
        # With audio (44.1 kHz mono), 640x360 at 30 fps.
        make_media(
            folder / "first.mp4",
            *("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"),
            *("-t", "3", *fast, "-c:a", "aac"),
        ),
        # Without audio, another size (4:3) and rate.
        make_media(
            folder / "second.mp4",
            *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"),
            *("-t", "2", *fast),
        ),
    ]


async def concatenate(clips: list[Path], spec: job_pb2.OutputSpec, out_dir: Path) -> CommandPlan:
    infos = [await probe(str(clip)) for clip in clips]
    plan = build_command(
        input_path=str(clips[0]),
        spec=spec,
        info=infos[0],
        out_dir=out_dir,
        extra_inputs=[(str(clip), info) for clip, info in zip(clips[1:], infos[1:], strict=True)],
    )
    await run_ffmpeg(
        plan.argv, duration=plan.expected_duration, on_progress=None, cancel_event=asyncio.Event()
    )
    return plan


def streams_and_format(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", path],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(result.stdout)


async def test_concat_of_a_clip_without_audio_lasts_the_sum_and_has_audio(
    clips: list[Path], tmp_path: Path
) -> None:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)],
    )

    plan = await concatenate(clips, spec, tmp_path)

    probed = streams_and_format(plan.outputs[0])
    video = next(s for s in probed["streams"] if s["codec_type"] == "video")
    audio = next(s for s in probed["streams"] if s["codec_type"] == "audio")
    assert (video["width"], video["height"]) == (640, 360)  # the first input's size
    assert video["r_frame_rate"] == "30/1"  # and rate
    assert float(video["duration"]) == pytest.approx(5.0, abs=0.05)
    assert float(audio["duration"]) == pytest.approx(5.0, abs=0.1)
    assert int(audio["sample_rate"]) == 48000
    assert plan.expected_duration == pytest.approx(5.0, abs=0.05)


async def test_audio_concat_fills_the_silent_clip_with_silence(
    clips: list[Path], tmp_path: Path
) -> None:
    plan = await concatenate(clips, job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A), tmp_path)

    probed = streams_and_format(plan.outputs[0])
    assert [stream["codec_type"] for stream in probed["streams"]] == ["audio"]
    assert float(probed["format"]["duration"]) == pytest.approx(5.0, abs=0.1)
