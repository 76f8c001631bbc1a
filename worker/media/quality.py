"""Measured quality: SSIM and PSNR of every encoded video variant against the source.

A second FFmpeg pass over the written output, not filters inside the encode: in FFmpeg 5.1 a
filter graph runs before the encoders, so an ssim filter in the encode's own graph could only
compare the source with its scaled copy, never with what the encoder made of it. The encoded
bits have to be decoded again, which only a second process reading the files gives (FFmpeg
7.1's loopback decoders would allow one process; Debian's 5.1 has none).

One process per output, like the ladder encode: the source is decoded once and split into one
reference per variant. Each variant is compared at its own size, against the source put through
the encode's own steps (the variant's fps filter, then `scale` to the variant's size with
FFmpeg's default bicubic scaler, as the encode did). The figures then measure what the codec
lost; scaling the variant up to the source instead would charge an upscaler's blur to the codec
and depend on a scaler no player promises to use.

Frames are paired on one grid: both sides start at zero (setpts=PTS-STARTPTS) and go through
`fps` at the variant's rate, so timestamps that differ only by a container's time base (WebM's
milliseconds, MPEG-TS's 90 kHz and its 1.4 s start) land on the same frame numbers, and a frame
the muxer duplicated or dropped is matched the way the muxer matched it.

The summary lines (`SSIM ... All:`, `PSNR ... average:`) are logged at info level, above the
error level every managed run keeps stderr at; they are read from an FFREPORT log in the work
directory, so the run keeps run_ffmpeg's cancellation, reaping and failure messages.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2

from common.storage.media_types import mime_type_for
from worker.media.containers import PROGRESSIVE_CONTAINERS
from worker.media.errors import ENCODE_FAILED, INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.ffmpeg import ffreport_setting, run_ffmpeg
from worker.media.geometry import default_stream, output_dimensions
from worker.media.input_access import InputAccess
from worker.media.ladder import DEFAULT_SEGMENT_SECONDS, LADDER_CONTAINERS
from worker.media.ladder_rungs import plan_rungs
from worker.media.plan import COMMON_FLAGS
from worker.media.progressive import progressive_variant
from worker.media.timing import clip_window, seconds_arg

OutputType = job_pb2.OutputType

QUALITY_FILE_NAME = "quality.json"
# What an infinite PSNR (identical pictures) is reported as; the server accepts up to this.
MAX_PSNR_DB = 100.0
REPORT_LOG_NAME = "quality.log"


@dataclass(frozen=True)
class MeasuredVariant:
    """One encoded variant to compare, and how the encode made it from the source."""

    # Position in spec.video.
    spec_index: int
    # Position among the variants actually encoded (v0/, init-0.mp4, ...); differs from
    # spec_index once a variant above the source was dropped.
    position: int
    width: int
    height: int
    # The variant's own fps filter (0: none), which the reference goes through too.
    fps: float
    # The rate both sides are put on to pair frames.
    frame_rate: float


def measured_variants(spec: job_pb2.OutputSpec, info: job_pb2.InputInfo) -> list[MeasuredVariant]:
    """The variants an output's encode produced, with the sizes its builder chose.

    Computed with the builders' own functions (output_dimensions, plan_rungs), so dropped and
    capped variants are the same ones the encode dropped and capped.
    """
    if spec.HasField("custom"):
        raise OutputSpecError("quality is not measured for custom commands")
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")
    container = PROGRESSIVE_CONTAINERS.get(spec.type)
    if container is not None:
        variant, _ = progressive_variant(spec, container)
        width, height = output_dimensions(variant, video, index=0, notes=[])
        rate = variant.fps or video.frame_rate
        return [MeasuredVariant(0, 0, width, height, variant.fps, rate)]
    ladder = LADDER_CONTAINERS.get(spec.type)
    if ladder is None:
        raise OutputSpecError(
            f"quality is measured for video outputs, not {OutputType.Name(spec.type)}"
        )
    segment_seconds = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
    rungs = plan_rungs(spec, video, ladder, segment_seconds, notes=[])
    return [
        MeasuredVariant(
            rung.spec_index, position, rung.width, rung.height, rung.variant.fps, rung.frame_rate
        )
        for position, rung in enumerate(rungs)
    ]


def encoded_location(spec: job_pb2.OutputSpec, position: int, out_dir: Path) -> list[Path]:
    """The files FFmpeg decodes for the variant at `position`: one file or HLS playlist, or
    (DASH, CMAF) the init segment and media segments to join, since FFmpeg 5.1's dash demuxer
    fails on a local manifest."""
    container = PROGRESSIVE_CONTAINERS.get(spec.type)
    if container is not None:
        return [out_dir / container.file_name]
    if spec.type == OutputType.OUTPUT_TYPE_HLS:
        return [out_dir / f"v{position}" / "index.m3u8"]
    init = out_dir / f"init-{position}.mp4"
    return [init, *sorted(out_dir.glob(f"seg-{position}-*.m4s"))]


def quality_command(
    *,
    input_path: str,
    video_index: int,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    variants: list[MeasuredVariant],
    encoded: list[str],
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """One ffmpeg run: the source's clip (as the encode read it) and every encoded variant in,
    ssim and psnr per variant, nothing out (`-f null`)."""
    start, duration = clip_window(spec.clip, info.duration_seconds)
    argv = [ffmpeg, *COMMON_FLAGS]
    if start > 0:
        argv += ["-ss", seconds_arg(start)]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    argv += ["-i", input_path]
    for path in encoded:
        argv += ["-i", path]
    argv += ["-filter_complex", quality_filter_graph(video_index, variants)]
    for position in range(len(variants)):
        argv += ["-map", f"[q{position}]"]
    return [*argv, "-f", "null", "-"]


def quality_filter_graph(video_index: int, variants: list[MeasuredVariant]) -> str:
    """[0:video] split into one reference per variant; input i+1 is variant i decoded.

    Filter instances are named ssim@v<i> and psnr@v<i>, which is how their summary lines in
    the log say which variant they are about.
    """
    count = len(variants)
    source = f"[0:{video_index}]setpts=PTS-STARTPTS"
    if count > 1:
        branches = [f"{source},split={count}" + "".join(f"[src{i}]" for i in range(count))]
    else:
        branches = [f"{source}[src0]"]
    for i, variant in enumerate(variants):
        grid = f"fps={variant.frame_rate:.6f}," if variant.frame_rate > 0 else ""
        reference = [f"fps={variant.fps:g}"] if variant.fps > 0 else []
        reference += [f"scale={variant.width}:{variant.height}", "format=yuv420p"]
        branches += [
            f"[src{i}]{','.join(reference)},{grid}split[ref{i}a][ref{i}b]",
            f"[{i + 1}:v:0]setpts=PTS-STARTPTS,{grid}format=yuv420p[enc{i}]",
            f"[enc{i}][ref{i}a]ssim@v{i}=shortest=1[ssim{i}]",
            f"[ssim{i}][ref{i}b]psnr@v{i}=shortest=1[q{i}]",
        ]
    return ";".join(branches)


_SSIM_LINE = re.compile(r"\[ssim@v(\d+) @ [^\]]*\] SSIM .*?\bAll:(\S+)")
_PSNR_LINE = re.compile(r"\[psnr@v(\d+) @ [^\]]*\] PSNR .*?\baverage:(\S+)")


def parse_quality_log(text: str) -> dict[int, tuple[float, float]]:
    """(ssim, psnr_db) per variant position from the ssim@v<i>/psnr@v<i> summary lines.

    ssim prints "All:0.987654 (19.08)" and psnr "average:41.23" over all planes; psnr prints
    "inf" for identical pictures, reported as MAX_PSNR_DB. A variant missing either line
    (no frame was compared) is left out.
    """
    ssim = {int(m.group(1)): _number(m.group(2)) for m in _SSIM_LINE.finditer(text)}
    psnr = {int(m.group(1)): _number(m.group(2)) for m in _PSNR_LINE.finditer(text)}
    figures = {}
    for position in sorted(ssim.keys() & psnr.keys()):
        ssim_value, psnr_value = ssim[position], psnr[position]
        if math.isnan(ssim_value) or math.isnan(psnr_value):
            continue
        figures[position] = (ssim_value, min(psnr_value, MAX_PSNR_DB))
    return figures


def _number(text: str) -> float:
    try:
        return float(text)  # also takes "inf" and "nan"
    except ValueError:
        return math.nan


async def measure_quality(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    work_dir: Path,
    access: InputAccess,
    cancel_event: asyncio.Event,
    ffmpeg: str = "ffmpeg",
) -> tuple[list[job_pb2.VariantQuality], job_pb2.OutputFile]:
    """Compares every variant of a finished output with the source, writes quality.json into
    out_dir, and returns the figures and the OutputFile describing quality.json.

    work_dir (outside out_dir, which is uploaded) holds the log and joined DASH segments.
    """
    variants = measured_variants(spec, info)
    video = default_stream(info, "video")
    assert video is not None  # measured_variants refused an input without video
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    encoded = [
        await asyncio.to_thread(
            decodable, encoded_location(spec, v.position, out_dir), work_dir, v.position
        )
        for v in variants
    ]
    argv = quality_command(
        input_path=input_path,
        video_index=video.index,
        spec=spec,
        info=info,
        variants=variants,
        encoded=[str(path) for path in encoded],
        ffmpeg=ffmpeg,
    )
    log_path = work_dir / REPORT_LOG_NAME
    env = access.environment()
    env["FFREPORT"] = ffreport_setting(log_path)
    _, duration = clip_window(spec.clip, info.duration_seconds)
    await run_ffmpeg(
        access.apply(argv),
        env=env,
        duration=duration,
        on_progress=None,
        cancel_event=cancel_event,
    )
    figures = parse_quality_log(await asyncio.to_thread(log_path.read_text, "utf-8", "replace"))
    missing = [v.spec_index for v in variants if v.position not in figures]
    if missing:
        raise MediaError(
            ENCODE_FAILED,
            f"quality measurement compared no frames of variant(s) {missing}",
        )
    results = [
        job_pb2.VariantQuality(
            variant_index=v.spec_index,
            width=v.width,
            height=v.height,
            ssim=round(figures[v.position][0], 6),
            psnr_db=round(figures[v.position][1], 4),
        )
        for v in variants
    ]
    return results, await asyncio.to_thread(_write_quality_file, out_dir, results)


def _write_quality_file(out_dir: Path, results: list[job_pb2.VariantQuality]) -> job_pb2.OutputFile:
    # Described here rather than by describe_output_file, which would hand it to ffprobe.
    path = out_dir / QUALITY_FILE_NAME
    path.write_text(quality_json(results), "utf-8")
    return job_pb2.OutputFile(
        path=QUALITY_FILE_NAME, size_bytes=path.stat().st_size, mime_type=mime_type_for(path)
    )


def quality_json(results: list[job_pb2.VariantQuality]) -> str:
    document = {
        "method": (
            "FFmpeg ssim and psnr filters over all planes, each variant at its own size against "
            "the source scaled with the encode's scaler (bicubic)"
        ),
        "variants": [
            {
                "variant_index": q.variant_index,
                "width": q.width,
                "height": q.height,
                "ssim": q.ssim,
                "psnr_db": q.psnr_db,
            }
            for q in results
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def decodable(parts: list[Path], work_dir: Path, position: int) -> Path:
    """One path FFmpeg can open: the file itself, or the fragments joined in work_dir."""
    if len(parts) == 1:
        return parts[0]
    joined = work_dir / f"variant-{position}.mp4"
    with joined.open("wb") as target:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, target)
    return joined
