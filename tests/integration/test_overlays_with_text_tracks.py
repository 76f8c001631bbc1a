"""An output with both overlays and text tracks (one carried, one burned in), run by the real
FFmpeg: the overlays' images and the tracks' WebVTT files are separate inputs of one command,
so their input numbers must not collide, and the burned text and the overlay are both drawn
after each rung's scaler."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from worker.media.commands import build_command
from worker.media.cues import Cue
from worker.media.ffmpeg import run_ffmpeg
from worker.media.overlays import OverlayDrawing, StagedImage
from worker.media.packaging import finalize_output
from worker.media.probe import probe
from worker.media.text_tracks import PreparedTrack, write_track_vtt

WIDTH, HEIGHT = 320, 180


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("overlays-text")
    source, square = folder / "grey.mp4", folder / "red.png"
    ffmpeg(
        *("-f", "lavfi", "-i", f"color=c=gray:s={WIDTH}x{HEIGHT}:r=25:d=2"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(source)),
    )
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=40x40", "-frames:v", "1", str(square))
    return {"source": source, "square": square, "folder": folder}


def tracks(folder: Path) -> list[PreparedTrack]:
    made = [
        PreparedTrack(0, "en", "English", True, False, False, [Cue(0.0, 2.0, "carried")],
                      folder / "t0.vtt"),
        PreparedTrack(1, "fr", "Français", False, False, False, [Cue(0.0, 2.0, "BRULE")],
                      folder / "t1.vtt", burn_in=True),
    ]  # fmt: skip
    for track in made:
        write_track_vtt(track)
    return made


def run(spec: job_pb2.OutputSpec, media: dict[str, Path], out_dir: Path) -> job_pb2.InputInfo:
    async def encode() -> job_pb2.InputInfo:
        info = await probe(str(media["source"]))
        overlay = job_pb2.Overlay(
            image=job_pb2.OverlayImage(url="file:///unused.png"),
            position=job_pb2.OVERLAY_POSITION_TOP_RIGHT,
        )
        drawing = OverlayDrawing([overlay], [StagedImage(media["square"], 40, 40)])
        plan = build_command(
            input_path=str(media["source"]),
            spec=spec,
            info=info,
            out_dir=out_dir,
            overlays=drawing,
            text_tracks=tracks(media["folder"]),
        )
        await run_ffmpeg(
            plan.argv, duration=plan.expected_duration, on_progress=None,
            cancel_event=asyncio.Event(),
        )  # fmt: skip
        await finalize_output(spec, info, out_dir, plan)
        return info

    return asyncio.run(encode())


def streams(path: Path) -> list[dict]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(result.stdout)["streams"]


def frame_at(path: Path, seconds: float) -> bytes:
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-ss", str(seconds), "-i", str(path),
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        capture_output=True, check=True,
    )  # fmt: skip
    return result.stdout


def red_at_top_right(picture: bytes, width: int) -> bool:
    x, y = width - 12, 12  # inside the square (2 % margin, 10 % of the width)
    r, g, b = picture[(y * width + x) * 3 : (y * width + x) * 3 + 3]
    return r > 200 and g < 60 and b < 60


def test_a_progressive_file_carries_one_track_burns_the_other_and_draws_the_overlay(
    media, tmp_path
):
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="320x180")],
    )
    run(spec, media, tmp_path)
    output = next(tmp_path.glob("*.mp4"))
    subtitles = [s for s in streams(output) if s["codec_type"] == "subtitle"]
    assert [(s["codec_name"], s["tags"]["language"]) for s in subtitles] == [("mov_text", "eng")]
    picture = frame_at(output, 1.0)
    assert red_at_top_right(picture, WIDTH)
    # The burned cue is drawn in the bottom band (grey everywhere else there).
    band = picture[(HEIGHT - 40) * WIDTH * 3 :]
    assert any(abs(band[i] - band[i + 1]) > 20 or band[i] > 200 for i in range(0, len(band), 3))


def test_a_ladder_draws_overlay_and_burned_text_on_every_rung(media, tmp_path):
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="320x180"),
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="160x90"),
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
    )
    run(spec, media, tmp_path)
    master = (tmp_path / "master.m3u8").read_text()
    assert "TYPE=SUBTITLES" in master and 'LANGUAGE="en"' in master
    assert 'LANGUAGE="fr"' not in master  # burned in, not carried
    drawn_widths = []
    for playlist in sorted(tmp_path.rglob("*.m3u8")):
        video = [st for st in streams(playlist) if st["codec_type"] == "video"]
        if playlist.name == "master.m3u8" or not video:
            continue
        width = video[0]["width"]
        assert red_at_top_right(frame_at(playlist, 1.0), width), playlist.name
        drawn_widths.append(width)
    assert sorted(drawn_widths) == [160, 320]
