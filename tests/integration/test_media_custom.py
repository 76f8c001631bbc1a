"""Custom FFmpeg commands in the worker's media layer, with the real FFmpeg.

The worker checks every command again before running it: each hostile list is refused by
the command builder itself (no process is started, nothing is written anywhere), and each
allowed list runs the way the worker runs it and makes what it says.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from tests.conftest import make_clip
from tests.custom_cases import ALLOWED, HOSTILE, IN, OUT
from worker.media import ffmpeg as ffmpeg_module
from worker.media.commands import build_command
from worker.media.describe import describe_output_file
from worker.media.errors import UNSUPPORTED_COMMAND, MediaError
from worker.media.ffmpeg import run_ffmpeg
from worker.media.input_access import InputAccess
from worker.media.probe import probe

T = job_pb2.OutputType


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("custom") / "in.mp4", seconds=2, size="640x360")


@pytest.fixture(scope="module")
def clip_info(clip: Path) -> job_pb2.InputInfo:
    return asyncio.run(probe(str(clip)))


def custom_spec(args: list[str], kind: str = "MP4") -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=T.Value(f"OUTPUT_TYPE_{kind}"), custom=job_pb2.CustomCommand(args=args)
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*"))


@pytest.mark.parametrize("args", [a for _, a, _ in HOSTILE], ids=[name for name, _, _ in HOSTILE])
def test_worker_refuses_hostile_command_before_starting_ffmpeg(
    args, clip, clip_info, tmp_path, monkeypatch
):
    started: list[object] = []

    async def no_process(*argv: object, **_: object) -> None:
        started.append(argv)
        raise AssertionError("a process was started")

    monkeypatch.setattr(ffmpeg_module.asyncio, "create_subprocess_exec", no_process)
    out_dir = tmp_path / "scratch" / "out"
    out_dir.mkdir(parents=True)
    before = files_under(tmp_path)
    with pytest.raises(MediaError) as raised:
        build_command(input_path=str(clip), spec=custom_spec(args), info=clip_info, out_dir=out_dir)
    assert raised.value.code == UNSUPPORTED_COMMAND
    assert raised.value.message.startswith("custom command refused")
    assert not raised.value.retryable
    assert started == []
    assert files_under(tmp_path) == before


def test_worker_refuses_custom_with_concatenated_inputs(clip, clip_info, tmp_path):
    with pytest.raises(MediaError) as raised:
        build_command(
            input_path=str(clip),
            spec=custom_spec(["-i", IN, OUT]),
            info=clip_info,
            out_dir=tmp_path,
            extra_inputs=[(str(clip), clip_info)],
        )
    assert raised.value.code == UNSUPPORTED_COMMAND


# What each ALLOWED list must make: (container, codec, width, height, duration).
EXPECTED = {
    "x264 crf with scale and aac": ("mov,mp4,m4a,3gp,3g2,mj2", "h264", 320, 180, 2.0),
    "trimmed vp9 + opus in webm": ("matroska,webm", "vp9", 160, 90, 1.0),
    "audio only mp3 with filters": ("mp3", "mp3", 0, 0, 2.0),
}


@pytest.mark.parametrize(
    ("args", "kind"), [(a, k) for _, a, k in ALLOWED], ids=[name for name, _, _ in ALLOWED]
)
async def test_allowed_command_runs_in_scratch_and_makes_what_it_says(
    args, kind, clip, clip_info, tmp_path
):
    name = next(n for n, a, _ in ALLOWED if a == args)
    scratch = tmp_path / "scratch"
    out_dir = scratch / "out"
    out_dir.mkdir(parents=True)
    plan = build_command(
        input_path=str(clip), spec=custom_spec(args, kind), info=clip_info, out_dir=out_dir
    )
    assert plan.cwd == out_dir and plan.cpu_limited
    access = InputAccess()
    argv = access.apply(plan.argv)
    # The worker's flags and the input's protocol list come from the worker, never the user.
    assert argv[argv.index("-i") - 2 : argv.index("-i")] == ["-protocol_whitelist", "file"]
    assert argv.count("-i") == 1 and argv[-1] == str(plan.outputs[0])
    assert {"-y", "-nostats"} <= set(argv) and "pipe:1" in argv
    reports: list[float] = []

    async def on_progress(percent: float) -> None:
        reports.append(percent)

    await run_ffmpeg(
        argv,
        duration=plan.expected_duration,
        on_progress=on_progress,
        cancel_event=asyncio.Event(),
        env=access.environment(),
        cwd=plan.cwd,
        cpu_seconds=60,
    )
    assert reports[-1] == 100.0
    assert files_under(scratch) == [out_dir, plan.outputs[0]]
    described = await describe_output_file(plan.outputs[0], out_dir)
    container, codec, width, height, duration = EXPECTED[name]
    assert (described.container, described.codec) == (container, codec)
    assert (described.width, described.height) == (width, height)
    assert described.duration_seconds == pytest.approx(duration, abs=0.15)
    assert plan.expected_duration == pytest.approx(duration)


async def test_cpu_time_limit_stops_ffmpeg():
    # A slow encode of an endless source: only the limit ends it.
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-progress", "pipe:1", "-nostats",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
        "-c:v", "libx264", "-preset", "veryslow", "-f", "null", "-",
    ]  # fmt: skip
    started = time.monotonic()
    with pytest.raises(MediaError) as raised:
        await run_ffmpeg(
            argv, duration=60, on_progress=None, cancel_event=asyncio.Event(), cpu_seconds=1
        )
    assert "CPU-time limit (1 s)" in raised.value.message
    assert time.monotonic() - started < 10
