"""The media layer against the real ffmpeg/ffprobe on tiny synthetic sources."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kiln.v1 import job_pb2

from worker.media.commands import build_command
from worker.media.describe import describe_output_file
from worker.media.errors import MediaError
from worker.media.ffmpeg import run_ffmpeg
from worker.media.plan import CommandPlan
from worker.media.probe import check_input_for_outputs, probe
from worker.media.progressive import build_progressive_command

SOURCE_SECONDS = 2.0


def make_media(path: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args, str(path)],
        check=True,
        timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    video = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    two_seconds = ["-t", str(SOURCE_SECONDS)]
    good = make_media(
        folder / "good.mp4", *video, *tone, *two_seconds, "-c:v", "libx264", "-c:a", "aac"
    )
    half = good.read_bytes()[: good.stat().st_size // 2]
    (folder / "truncated.mp4").write_bytes(half)
    return {
        "good": good,
        "silent": make_media(folder / "silent.mp4", *video, *two_seconds, "-c:v", "libx264"),
        "audio_only": make_media(folder / "audio_only.m4a", *tone, *two_seconds, "-c:a", "aac"),
        "rotated": make_media(
            folder / "rotated.mp4", "-i", str(good), "-c", "copy", "-metadata:s:v:0", "rotate=90"
        ),
        # Index up front: ffprobe reads it happily although half the data is gone.
        "faststart": make_media(
            folder / "faststart.mp4", "-i", str(good), "-c", "copy", "-movflags", "+faststart"
        ),
        "truncated": folder / "truncated.mp4",
        "long": make_media(
            folder / "long.mp4",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x480:rate=25",
            "-t",
            "20",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ),
    }


def h264_mp4(resolution: str = "240p", **variant_fields: Any) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[
            job_pb2.VideoVariant(
                codec=job_pb2.VIDEO_CODEC_H264, resolution=resolution, **variant_fields
            )
        ],
    )


async def plan_for(source: Path, spec: job_pb2.OutputSpec, out_dir: Path) -> CommandPlan:
    info = await probe(str(source))
    return build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)


def children_of(parent_pid: int, *, mentioning: str = "") -> list[int]:
    """Processes (zombies included) whose parent is parent_pid and whose command line contains
    `mentioning`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent_pid and mentioning.encode() in cmdline:
            found.append(int(entry.name))
    return found


def ffmpeg_children_writing_to(out_dir: Path) -> list[int]:
    return children_of(os.getpid(), mentioning=str(out_dir))


def process_exists(pid: int) -> bool:
    # /proc/<pid> remains for a zombie, so its absence also proves the child was reaped.
    return Path(f"/proc/{pid}").exists()


def process_running(pid: int) -> bool:
    # For grandchildren, which only their own parent (or init) can reap: dead means zombie or gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- probe -----------------------------------------------------------------------------------


async def test_probe_reads_streams_and_duration(sources: dict[str, Path]) -> None:
    info = await probe(str(sources["good"]))

    assert "mp4" in info.container
    assert info.duration_seconds == pytest.approx(SOURCE_SECONDS, abs=0.05)
    assert info.size_bytes == sources["good"].stat().st_size
    assert info.bitrate > 0
    video, audio = info.streams
    assert (video.index, video.kind, video.codec) == (0, "video", "h264")
    assert (video.width, video.height, video.rotation) == (320, 240, 0)
    assert video.frame_rate == 25.0
    assert video.pixel_format == "yuv420p"
    assert video.is_default
    assert (audio.index, audio.kind, audio.codec) == (1, "audio", "aac")
    assert (audio.channels, audio.sample_rate) == (1, 48000)
    assert audio.bitrate > 0
    assert audio.is_default
    check_input_for_outputs(info, wants_video=True)


async def test_probe_reads_rotation(sources: dict[str, Path]) -> None:
    info = await probe(str(sources["rotated"]))

    assert info.streams[0].rotation in (90, 270)


async def test_missing_input_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as raised:
        await probe(str(tmp_path / "nowhere.mp4"))

    assert raised.value.code == "INPUT_UNREADABLE"
    assert str(tmp_path) not in raised.value.message


async def test_empty_input_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()

    with pytest.raises(MediaError) as raised:
        await probe(str(empty))

    assert raised.value.code == "INPUT_EMPTY"


async def test_text_file_named_mp4_is_not_media(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("These are meeting notes, not a video.\n" * 20)

    with pytest.raises(MediaError) as raised:
        await probe(str(text))

    assert raised.value.code == "INPUT_NOT_MEDIA"


@pytest.mark.parametrize("name", ["truncated", "faststart_truncated"])
async def test_truncated_mp4_is_corrupt(
    name: str, sources: dict[str, Path], tmp_path: Path
) -> None:
    if name == "truncated":
        source = sources["truncated"]
    else:
        whole = sources["faststart"].read_bytes()
        source = tmp_path / "faststart_truncated.mp4"
        source.write_bytes(whole[: len(whole) // 2])

    with pytest.raises(MediaError) as raised:
        await probe(str(source))

    assert raised.value.code == "INPUT_CORRUPT"


async def test_audio_only_input_is_refused_for_video(sources: dict[str, Path]) -> None:
    info = await probe(str(sources["audio_only"]))
    check_input_for_outputs(info, wants_video=False, wants_audio=True)

    with pytest.raises(MediaError) as raised:
        check_input_for_outputs(info, wants_video=True)

    assert raised.value.code == "INPUT_NO_VIDEO"


async def test_silent_input_is_refused_for_audio_only_outputs(sources: dict[str, Path]) -> None:
    info = await probe(str(sources["silent"]))

    with pytest.raises(MediaError) as raised:
        check_input_for_outputs(info, wants_video=False, wants_audio=True)

    assert raised.value.code == "INPUT_NO_AUDIO"


# --- encode ----------------------------------------------------------------------------------


async def test_encode_mp4_end_to_end(sources: dict[str, Path], tmp_path: Path) -> None:
    plan = await plan_for(sources["good"], h264_mp4("240p"), tmp_path)
    reported: list[float] = []

    async def record(percent: float) -> None:
        reported.append(percent)

    await run_ffmpeg(
        plan.argv,
        duration=plan.expected_duration,
        on_progress=record,
        cancel_event=asyncio.Event(),
    )

    assert reported
    assert reported == sorted(reported)
    assert reported[-1] == 100.0
    assert reported.count(100.0) == 1
    described = await describe_output_file(plan.outputs[0], relative_to=tmp_path)
    assert described.path == "output.mp4"
    assert described.mime_type == "video/mp4"
    assert described.size_bytes == plan.outputs[0].stat().st_size
    assert "mp4" in described.container
    assert (described.codec, described.width, described.height) == ("h264", 320, 240)
    assert described.duration_seconds == pytest.approx(SOURCE_SECONDS, abs=0.1)
    assert described.bitrate > 0
    output_info = await probe(str(plan.outputs[0]))
    assert [(s.kind, s.codec) for s in output_info.streams] == [
        ("video", "h264"),
        ("audio", "aac"),
    ]
    assert output_info.streams[1].sample_rate == 48000


async def test_rotated_source_is_encoded_upright(sources: dict[str, Path], tmp_path: Path) -> None:
    plan = await plan_for(sources["rotated"], h264_mp4("240p"), tmp_path)

    await run_ffmpeg(
        plan.argv, duration=plan.expected_duration, on_progress=None, cancel_event=asyncio.Event()
    )

    described = await describe_output_file(plan.outputs[0], relative_to=tmp_path)
    assert (described.width, described.height) == (180, 240)
    assert (await probe(str(plan.outputs[0]))).streams[0].rotation == 0


async def test_source_without_audio_gives_output_without_audio(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    plan = await plan_for(sources["silent"], h264_mp4("240p"), tmp_path)

    await run_ffmpeg(
        plan.argv, duration=plan.expected_duration, on_progress=None, cancel_event=asyncio.Event()
    )

    output_info = await probe(str(plan.outputs[0]))
    assert [s.kind for s in output_info.streams] == ["video"]


@pytest.mark.parametrize(
    ("spec", "mime_type", "codec", "size"),
    [
        (
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MKV,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H265, resolution="120p")],
            ),
            "video/x-matroska",
            "hevc",
            (160, 120),
        ),
        (
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_WEBM, video=[job_pb2.VideoVariant(resolution="120p")]
            ),
            "video/webm",
            "vp9",
            (160, 120),
        ),
        (
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_WEBM,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_AV1, resolution="120p")],
            ),
            "video/webm",
            "av1",
            (160, 120),
        ),
        (job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3), "audio/mpeg", "mp3", (0, 0)),
        (job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_OPUS), "audio/ogg", "opus", (0, 0)),
        (
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_JPG, thumbnail=job_pb2.ThumbnailSpec(time_seconds=1)
            ),
            "image/jpeg",
            "mjpeg",
            (320, 240),
        ),
        (
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_WEBP, thumbnail=job_pb2.ThumbnailSpec(width=160)
            ),
            "image/webp",
            "webp",
            (160, 120),
        ),
    ],
    ids=["mkv-h265", "webm-vp9", "webm-av1", "mp3", "opus", "jpg", "webp"],
)
async def test_other_output_types(
    spec: job_pb2.OutputSpec,
    *,
    mime_type: str,
    codec: str,
    size: tuple[int, int],
    sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    plan = await plan_for(sources["good"], spec, tmp_path)

    await run_ffmpeg(
        plan.argv, duration=plan.expected_duration, on_progress=None, cancel_event=asyncio.Event()
    )

    described = await describe_output_file(plan.outputs[0], relative_to=tmp_path)
    assert (described.mime_type, described.codec) == (mime_type, codec)
    assert (described.width, described.height) == size


async def test_failed_encode_reports_the_reason_without_server_paths(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    plan = await plan_for(sources["good"], h264_mp4("240p"), tmp_path / "missing" / "folder")

    with pytest.raises(MediaError) as raised:
        await run_ffmpeg(
            plan.argv,
            duration=plan.expected_duration,
            on_progress=None,
            cancel_event=asyncio.Event(),
        )

    assert raised.value.code == "ENCODE_FAILED"
    assert "output.mp4" in raised.value.message
    assert "No such file or directory" in raised.value.message
    assert str(tmp_path) not in raised.value.message


# --- stopping --------------------------------------------------------------------------------


async def start_long_encode(
    sources: dict[str, Path], out_dir: Path, cancel_event: asyncio.Event
) -> tuple[asyncio.Task[None], CommandPlan, list[int]]:
    """Starts an encode that takes far longer than the test and returns once it reports progress,
    with the ffmpeg pid(s) seen at that moment."""
    info = await probe(str(sources["long"]))
    plan = build_progressive_command(
        input_path=str(sources["long"]),
        spec=h264_mp4("480p", quality=job_pb2.QUALITY_PREMIUM),
        info=info,
        out_dir=out_dir,
    )
    assert "medium" in plan.argv
    first_progress = asyncio.Event()
    pids: list[int] = []

    async def on_progress(_: float) -> None:
        if not first_progress.is_set():
            pids.extend(ffmpeg_children_writing_to(out_dir))
            first_progress.set()

    encode = asyncio.create_task(
        run_ffmpeg(
            plan.argv,
            duration=plan.expected_duration,
            on_progress=on_progress,
            cancel_event=cancel_event,
            remove_on_failure=plan.outputs,
        )
    )
    await asyncio.wait_for(first_progress.wait(), timeout=10)
    assert len(pids) == 1
    assert process_exists(pids[0])
    return encode, plan, pids


async def test_cancel_stops_ffmpeg_within_a_second(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    cancel_event = asyncio.Event()
    encode, plan, pids = await start_long_encode(sources, tmp_path, cancel_event)

    canceled_at = time.monotonic()
    cancel_event.set()
    with pytest.raises(MediaError) as raised:
        await asyncio.wait_for(encode, timeout=5)
    elapsed = time.monotonic() - canceled_at

    assert raised.value.code == "CANCELED"
    assert elapsed < 1.0
    assert not process_exists(pids[0])
    assert not plan.outputs[0].exists()


async def test_cancelling_the_caller_reaps_ffmpeg(sources: dict[str, Path], tmp_path: Path) -> None:
    encode, _, pids = await start_long_encode(sources, tmp_path, asyncio.Event())

    encode.cancel()
    with pytest.raises(asyncio.CancelledError):
        await encode

    assert not process_exists(pids[0])
    assert ffmpeg_children_writing_to(tmp_path) == []


async def test_cancel_kills_a_process_group_that_ignores_sigterm(tmp_path: Path) -> None:
    # A stand-in for an ffmpeg stuck in its SIGTERM handler: a shell ignoring SIGTERM with a
    # child of its own, so both the SIGKILL escalation and the group-wide kill are exercised.
    marker = str(tmp_path / "stubborn")
    # The sleeper is started before the progress line, so it exists when the test looks for it.
    script = f"trap '' TERM; sleep 30 & echo progress=continue; wait; echo {marker}"
    cancel_event = asyncio.Event()
    first_progress = asyncio.Event()
    pids: list[int] = []

    async def on_progress(_: float) -> None:
        pids.extend(ffmpeg_children_writing_to(tmp_path))
        first_progress.set()

    encode = asyncio.create_task(
        run_ffmpeg(
            ["sh", "-c", script],
            duration=30,
            on_progress=on_progress,
            cancel_event=cancel_event,
        )
    )
    await asyncio.wait_for(first_progress.wait(), timeout=5)
    shell_pid = pids[0]
    sleeper_pids = children_of(shell_pid)

    canceled_at = time.monotonic()
    cancel_event.set()
    with pytest.raises(MediaError) as raised:
        await asyncio.wait_for(encode, timeout=5)
    elapsed = time.monotonic() - canceled_at

    assert raised.value.code == "CANCELED"
    assert 0.5 <= elapsed < 1.0
    assert not process_exists(shell_pid)
    assert sleeper_pids
    # SIGKILL to the group is sent; a grandchild still has to be scheduled to die, which on a
    # loaded machine takes a moment: wait for the condition itself, bounded.
    deadline = time.monotonic() + 2.0
    # (ASYNC110: a grandchild's death has no event to await; /proc is all there is.)
    while any(process_running(pid) for pid in sleeper_pids) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert not any(process_running(pid) for pid in sleeper_pids)


async def test_progress_reports_are_throttled_but_the_final_100_is_not() -> None:
    # Ten blocks written at once, as a fast encode does: with a long interval only the first
    # block and the end get through.
    blocks = "".join(
        f"echo out_time_us={second}000000; echo progress=continue; " for second in range(1, 11)
    )
    reported: list[float] = []

    async def record(percent: float) -> None:
        reported.append(percent)

    await run_ffmpeg(
        ["sh", "-c", f"{blocks}echo progress=end"],
        duration=20,
        on_progress=record,
        cancel_event=asyncio.Event(),
        min_report_interval=60,
    )

    assert reported == [5.0, 100.0]
