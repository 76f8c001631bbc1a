"""Each recipe, expanded by the server's domain and built by the worker, makes what it says.

The spec goes the way it goes in production: server.domain.recipes.expand (as at Create),
then the worker's build_command with the probed input, run by run_ffmpeg and read back with
ffprobe. Sources are 2 s of 320x180.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from server.domain import recipes
from tests.media_probe import ffprobe, streams
from worker.media.commands import build_command
from worker.media.ffmpeg import run_ffmpeg
from worker.media.plan import CommandPlan
from worker.media.probe import probe

T = job_pb2.OutputType
SECONDS = 2.0


def make_media(path: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args, str(path)],
        check=True,
        timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("recipe_sources")
    video = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    clip = ["-t", str(SECONDS), "-pix_fmt", "yuv420p"]
    return {
        # Already web-ready in all but the index position (no +faststart).
        "h264": make_media(
            folder / "h264.mp4",
            *video,
            *tone,
            *clip,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ),
        "vp9": make_media(
            folder / "vp9.webm",
            *video,
            *tone,
            *clip,
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-c:a",
            "libopus",
        ),
    }


@pytest.fixture(scope="module")
def infos(sources: dict[str, Path]) -> dict[str, job_pb2.InputInfo]:
    return {name: asyncio.run(probe(str(path))) for name, path in sources.items()}


def recipe(name: str, type: job_pb2.OutputType | None = None, **params: str) -> job_pb2.OutputSpec:
    expansion = recipes.expand(
        job_pb2.OutputSpec(type=type, recipe=job_pb2.Recipe(name=name, params=params))
    )
    assert expansion.spec is not None, expansion.problems
    return expansion.spec


def make(
    spec: job_pb2.OutputSpec,
    source: str,
    sources: dict[str, Path],
    infos: dict[str, job_pb2.InputInfo],
    out_dir: Path,
    extra: tuple[str, ...] = (),
) -> tuple[CommandPlan, Path, dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = build_command(
        input_path=str(sources[source]),
        spec=spec,
        info=infos[source],
        out_dir=out_dir,
        extra_inputs=[(str(sources[name]), infos[name]) for name in extra],
    )
    asyncio.run(
        run_ffmpeg(
            plan.argv,
            duration=plan.expected_duration,
            on_progress=None,
            cancel_event=asyncio.Event(),
        )
    )
    (output,) = plan.outputs
    return plan, output, ffprobe(output)


def packets_md5(path: Path, stream: str) -> str:
    """Checksum of a stream's packets: equal exactly when the bitstream is unchanged."""
    result = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            f"0:{stream}",
            "-c",
            "copy",
            "-f",
            "md5",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def top_level_boxes(path: Path) -> list[str]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8].decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def duration(info: dict) -> float:
    return float(info["format"]["duration"])


def test_web_ready_keeps_a_compatible_video_bitstream(sources, infos, tmp_path):
    plan, output, info = make(recipe("web_ready"), "h264", sources, infos, tmp_path)
    assert packets_md5(output, "v") == packets_md5(sources["h264"], "v")
    assert packets_md5(output, "a") == packets_md5(sources["h264"], "a")
    boxes = top_level_boxes(output)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart
    source_boxes = top_level_boxes(sources["h264"])
    assert source_boxes.index("mdat") < source_boxes.index("moov")  # the source had it last
    assert "stream copy" in plan.notes[0]
    assert abs(duration(info) - SECONDS) < 0.1


def test_web_ready_encodes_an_incompatible_input(sources, infos, tmp_path):
    plan, output, info = make(recipe("web_ready"), "vp9", sources, infos, tmp_path)
    assert [s["codec_name"] for s in streams(info, "video")] == ["h264"]
    assert [s["codec_name"] for s in streams(info, "audio")] == ["aac"]
    assert info["format"]["format_name"].startswith("mov,mp4")
    assert not any("stream copy" in note for note in plan.notes)
    boxes = top_level_boxes(output)
    assert boxes.index("moov") < boxes.index("mdat")
    assert abs(duration(info) - SECONDS) < 0.1


def test_extract_audio_copies_when_the_codec_allows_and_encodes_otherwise(sources, infos, tmp_path):
    plan, output, info = make(recipe("extract_audio"), "h264", sources, infos, tmp_path / "m4a")
    assert [s["codec_name"] for s in info["streams"]] == ["aac"]
    assert packets_md5(output, "a") == packets_md5(sources["h264"], "a")
    assert "-c:a" in plan.argv and plan.argv[plan.argv.index("-c:a") + 1] == "copy"

    opus = make(recipe("extract_audio", T.OUTPUT_TYPE_OPUS), "vp9", sources, infos, tmp_path / "o")
    assert opus[1].name == "output.opus" and "copy" in opus[0].argv

    plan, _, info = make(
        recipe("extract_audio", T.OUTPUT_TYPE_MP3, bitrate_kbps="64"),
        "h264",
        sources,
        infos,
        tmp_path / "mp3",
    )
    assert [s["codec_name"] for s in info["streams"]] == ["mp3"]
    assert "copy" not in plan.argv
    assert abs(duration(info) - SECONDS) < 0.15


def test_thumbnail_at_the_seek_time(sources, infos, tmp_path):
    _, output, info = make(
        recipe("thumbnail", seekSeconds="1.5", width="160"), "h264", sources, infos, tmp_path
    )
    (picture,) = streams(info, "video")
    assert (output.name, picture["codec_name"], picture["width"], picture["height"]) == (
        "output.jpg",
        "mjpeg",
        160,
        90,
    )


def test_compress_proxy_resize_trim_transcode(sources, infos, tmp_path):
    plan, output, info = make(recipe("compress", crf="40"), "h264", sources, infos, tmp_path / "c")
    assert plan.argv[plan.argv.index("-crf") + 1] == "40"
    (video,) = streams(info, "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)
    assert output.stat().st_size < sources["h264"].stat().st_size

    _, output, info = make(
        recipe("proxy", resolution="160x90", all_intra="true"),
        "h264",
        sources,
        infos,
        tmp_path / "p",
    )
    (video,) = streams(info, "video")
    assert (video["width"], video["height"]) == (160, 90)
    flags = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(flags) == 50 and all(flag.startswith("K") for flag in flags)  # all intra

    _, _, info = make(
        recipe("resize", T.OUTPUT_TYPE_MKV, resolution="240x136"),
        "vp9",
        sources,
        infos,
        tmp_path / "r",
    )
    (video,) = streams(info, "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 240, 136)

    _, _, info = make(
        recipe("trim", start_seconds="0.5", end_seconds="1.5"),
        "h264",
        sources,
        infos,
        tmp_path / "t",
    )
    assert abs(duration(info) - 1.0) < 0.1

    _, _, info = make(
        recipe("transcode", T.OUTPUT_TYPE_WEBM, quality="economy", resolution="160x90"),
        "h264",
        sources,
        infos,
        tmp_path / "w",
    )
    assert [s["codec_name"] for s in info["streams"]] == ["vp9", "opus"]


def test_concat_joins_the_inputs(sources, infos, tmp_path):
    _, _, info = make(
        recipe("concat", resolution="240p"), "h264", sources, infos, tmp_path, extra=("vp9",)
    )
    (video,) = streams(info, "video")
    assert (video["codec_name"], video["height"]) == ("h264", 180)  # never upscaled
    assert abs(duration(info) - 2 * SECONDS) < 0.15
