"""Every progressive, audio and image output type and codec, and awkward sources, through real FFmpeg.

Each produced file is checked with ffprobe: codec, dimensions, duration within one frame, and
audio present or absent as asked.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import subprocess
import wave
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from tests.media_probe import ffprobe
from worker.media.commands import build_command
from worker.media.ffmpeg import run_ffmpeg
from worker.media.probe import probe

T, V, A = job_pb2.OutputType, job_pb2.VideoCodec, job_pb2.AudioCodec
FPS = 25
FRAME = 1 / FPS


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("matrix")
    video = ["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    paths = {
        name: folder / f"{name}.{ext}"
        for name, ext in [
            ("good", "mp4"),
            ("odd", "mp4"),
            ("vfr", "mkv"),
            ("tenbit", "mp4"),
            ("tracks", "mkv"),
        ]
    }
    ffmpeg(*video, *tone, "-t", "2", "-c:v", "libx264", "-c:a", "aac", str(paths["good"]))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=321x241:rate={FPS}",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv444p",
        str(paths["odd"]),
    )
    # Variable frame rate: the second second runs at a third of the first second's rate.
    ffmpeg(
        *video,
        "-t",
        "2",
        "-vf",
        "select='lt(t,1)+not(mod(n,3))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        str(paths["vfr"]),
    )
    ffmpeg(*video, "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p10le", str(paths["tenbit"]))
    # Two audio tracks; the second is the default one and is a different tone.
    ffmpeg(
        *video,
        *tone,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=44100",
        "-t",
        "2",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:a",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-ac",
        "1",
        "-disposition:a:0",
        "0",
        "-disposition:a:1",
        "default",
        str(paths["tracks"]),
    )
    return paths


async def encode(
    source: Path, spec: job_pb2.OutputSpec, out_dir: Path
) -> tuple[Path, dict, list[str]]:
    info = await probe(str(source))
    plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)
    await run_ffmpeg(
        plan.argv, duration=plan.expected_duration, on_progress=None, cancel_event=asyncio.Event()
    )
    return plan.outputs[0], ffprobe(plan.outputs[0]), plan.notes


MP3, PCM = job_pb2.AUDIO_CODEC_MP3, job_pb2.AUDIO_CODEC_PCM


def kinds(info: dict, kind: str) -> list[dict]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def video_out(
    kind: job_pb2.OutputType, video: job_pb2.VideoCodec, resolution: str = "240p", **audio
) -> job_pb2.OutputSpec:
    spec = job_pb2.OutputSpec(
        type=kind, video=[job_pb2.VideoVariant(codec=video, resolution=resolution)]
    )
    if audio:
        spec.audio.CopyFrom(job_pb2.AudioSpec(**audio))
    return spec


@pytest.mark.parametrize(
    ("spec", "video_codec", "audio_codec", "format_name"),
    [
        (video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H264), "h264", "aac", "mp4"),
        (video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H265), "hevc", "aac", "mp4"),
        (video_out(T.OUTPUT_TYPE_MOV, V.VIDEO_CODEC_H264), "h264", "aac", "mov"),
        (video_out(T.OUTPUT_TYPE_MOV, V.VIDEO_CODEC_H265), "hevc", "aac", "mov"),
        (video_out(T.OUTPUT_TYPE_MKV, V.VIDEO_CODEC_H264), "h264", "aac", "matroska"),
        (video_out(T.OUTPUT_TYPE_MKV, V.VIDEO_CODEC_H265), "hevc", "aac", "matroska"),
        (video_out(T.OUTPUT_TYPE_WEBM, V.VIDEO_CODEC_VP9), "vp9", "opus", "webm"),
        (video_out(T.OUTPUT_TYPE_WEBM, V.VIDEO_CODEC_AV1), "av1", "opus", "webm"),
        (video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H264, disabled=True), "h264", None, "mp4"),
        # Every audio codec validation admits for a container, the worker writes.
        (video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H264, codec=MP3), "h264", "mp3", "mp4"),
        (video_out(T.OUTPUT_TYPE_MKV, V.VIDEO_CODEC_H264, codec=MP3), "h264", "mp3", "matroska"),
        (video_out(T.OUTPUT_TYPE_MOV, V.VIDEO_CODEC_H264, codec=PCM), "h264", "pcm_s16le", "mov"),
    ],
    ids=[
        "mp4-h264",
        "mp4-h265",
        "mov-h264",
        "mov-h265",
        "mkv-h264",
        "mkv-h265",
        "webm-vp9",
        "webm-av1",
        "mp4-no-audio",
        "mp4-mp3",
        "mkv-mp3",
        "mov-pcm",
    ],
)
async def test_progressive(sources, tmp_path, spec, video_codec, audio_codec, format_name):
    _, info, _ = await encode(sources["good"], spec, tmp_path)
    (video,) = kinds(info, "video")
    assert video["codec_name"] == video_codec
    assert (video["width"], video["height"]) == (320, 240)
    assert format_name in info["format"]["format_name"]
    assert abs(float(info["format"]["duration"]) - 2.0) <= FRAME + 0.03  # + one AAC/Opus frame
    assert [a["codec_name"] for a in kinds(info, "audio")] == ([audio_codec] if audio_codec else [])


@pytest.mark.parametrize(
    ("kind", "codec", "sample_rate"),
    [
        (T.OUTPUT_TYPE_MP3, "mp3", 48000),
        (T.OUTPUT_TYPE_M4A, "aac", 48000),
        (T.OUTPUT_TYPE_OPUS, "opus", 48000),
        (T.OUTPUT_TYPE_WAV, "pcm_s16le", 48000),
    ],
    ids=["mp3", "m4a", "opus", "wav"],
)
async def test_audio_only(sources, tmp_path, kind, codec, sample_rate):
    _, info, _ = await encode(sources["good"], job_pb2.OutputSpec(type=kind), tmp_path)
    assert kinds(info, "video") == []
    (audio,) = kinds(info, "audio")
    assert audio["codec_name"] == codec
    assert int(audio["sample_rate"]) == sample_rate
    assert abs(float(info["format"]["duration"]) - 2.0) <= 0.06


@pytest.mark.parametrize(
    ("kind", "codec"),
    [(T.OUTPUT_TYPE_JPG, "mjpeg"), (T.OUTPUT_TYPE_PNG, "png"), (T.OUTPUT_TYPE_WEBP, "webp")],
    ids=["jpg", "png", "webp"],
)
async def test_single_thumbnail(sources, tmp_path, kind, codec):
    spec = job_pb2.OutputSpec(type=kind, thumbnail=job_pb2.ThumbnailSpec(time_seconds=1, width=160))
    _, info, _ = await encode(sources["good"], spec, tmp_path)
    (image,) = kinds(info, "video")
    assert image["codec_name"] == codec
    assert (image["width"], image["height"]) == (160, 120)


async def test_odd_source_gets_even_dimensions(sources, tmp_path):
    _, info, _ = await encode(
        sources["odd"], video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H264, "240p"), tmp_path
    )
    (video,) = kinds(info, "video")
    assert video["width"] % 2 == 0 and video["height"] % 2 == 0
    assert video["height"] == 240
    assert video["pix_fmt"] == "yuv420p"


async def test_variable_frame_rate_source(sources, tmp_path):
    source_info = await probe(str(sources["vfr"]))
    _, info, _ = await encode(
        sources["vfr"], video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H264, "240p"), tmp_path
    )
    (video,) = kinds(info, "video")
    assert video["codec_name"] == "h264"
    assert abs(float(info["format"]["duration"]) - source_info.duration_seconds) <= 2 * FRAME


async def test_ten_bit_source_becomes_eight_bit_h264(sources, tmp_path):
    source_video = kinds(ffprobe(sources["tenbit"]), "video")[0]
    assert source_video["pix_fmt"] == "yuv420p10le"
    _, info, _ = await encode(
        sources["tenbit"], video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H264, "240p"), tmp_path
    )
    (video,) = kinds(info, "video")
    assert video["pix_fmt"] == "yuv420p"
    assert video["profile"] in ("High", "Main", "Constrained Baseline")


async def test_several_audio_tracks_use_the_default_one(sources, tmp_path):
    output, _, _ = await encode(
        sources["tracks"], job_pb2.OutputSpec(type=T.OUTPUT_TYPE_WAV), tmp_path
    )
    # The default track is the 1 kHz tone, the first track 440 Hz: count zero crossings.
    with wave.open(str(output)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        samples = array.array("h", wav.readframes(wav.getnframes()))
    mono = samples[::channels]
    crossings = sum(1 for a, b in itertools.pairwise(mono) if (a < 0) != (b < 0))
    frequency = crossings / 2 / (len(mono) / rate)
    assert 950 <= frequency <= 1050, frequency


async def test_upscale_is_capped_with_a_note(sources, tmp_path):
    _, info, notes = await encode(
        sources["good"], video_out(T.OUTPUT_TYPE_MP4, V.VIDEO_CODEC_H264, "1080p"), tmp_path
    )
    (video,) = kinds(info, "video")
    assert (video["width"], video["height"]) == (320, 240)
    assert any("capped" in note for note in notes)
