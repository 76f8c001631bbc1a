"""Measured quality against the real ffmpeg: encode as the worker does, then measure.

One 2 s 320x180 source per module; each output is encoded once (ultrafast-sized work).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from worker.media.commands import build_command
from worker.media.ffmpeg import run_ffmpeg
from worker.media.input_access import InputAccess
from worker.media.packaging import finalize_output
from worker.media.probe import probe
from worker.media.quality import QUALITY_FILE_NAME, measure_quality

H264 = job_pb2.VIDEO_CODEC_H264


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quality-source") / "source.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-c:a", "aac", str(path)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path


def encode_and_measure(
    source: Path, spec: job_pb2.OutputSpec, folder: Path
) -> tuple[list[job_pb2.VariantQuality], job_pb2.OutputFile, Path]:
    """What worker/tasks/transcode.py does: build, run, finalize, then the quality pass."""

    async def run():
        info = await probe(str(source))
        out_dir = folder / "out"
        out_dir.mkdir(parents=True)
        plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)
        stop = asyncio.Event()
        await run_ffmpeg(plan.argv, duration=plan.expected_duration, on_progress=None,
                         cancel_event=stop)  # fmt: skip
        await finalize_output(spec, info, out_dir, plan)
        quality, described = await measure_quality(
            input_path=str(source),
            spec=spec,
            info=info,
            out_dir=out_dir,
            work_dir=folder / "quality",
            access=InputAccess(),
            cancel_event=stop,
        )
        return quality, described, out_dir

    return asyncio.run(run())


def progressive(quality: job_pb2.Quality) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=H264, resolution="180p", quality=quality)],
        measure_quality=True,
    )


def assert_plausible(figure: job_pb2.VariantQuality) -> None:
    assert 0.5 < figure.ssim <= 1.0, figure
    assert 20.0 < figure.psnr_db < 100.0, figure


def test_progressive_output_reports_plausible_figures_and_a_worse_crf_lower_ones(source, tmp_path):
    premium, described, out_dir = encode_and_measure(
        source, progressive(job_pb2.QUALITY_PREMIUM), tmp_path / "premium"
    )
    economy, _, _ = encode_and_measure(
        source, progressive(job_pb2.QUALITY_ECONOMY), tmp_path / "economy"
    )
    [best], [worse] = premium, economy
    assert (best.variant_index, best.width, best.height) == (0, 320, 180)
    assert_plausible(best)
    assert_plausible(worse)
    # CRF 20 (PREMIUM) against CRF 28 (ECONOMY) of the same H.264 encoder.
    assert worse.ssim < best.ssim
    assert worse.psnr_db < best.psnr_db

    written = json.loads((out_dir / QUALITY_FILE_NAME).read_text())
    assert written["variants"] == [
        {"variant_index": 0, "width": 320, "height": 180, "ssim": best.ssim,
         "psnr_db": best.psnr_db}
    ]  # fmt: skip
    assert (described.path, described.mime_type) == (QUALITY_FILE_NAME, "application/json")
    assert described.size_bytes == (out_dir / QUALITY_FILE_NAME).stat().st_size


@pytest.mark.parametrize("kind", [job_pb2.OUTPUT_TYPE_HLS, job_pb2.OUTPUT_TYPE_DASH])
def test_two_variant_ladder_reports_each_variant_and_the_smaller_one_differs(
    source, tmp_path, kind
):
    spec = job_pb2.OutputSpec(
        type=kind,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution="180p"),
            # A worse CRF on the second variant (ECONOMY: 28 against STANDARD's 23).
            job_pb2.VideoVariant(codec=H264, resolution="90p", quality=job_pb2.QUALITY_ECONOMY),
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
        # A clip: the reference must be cut where the encode was.
        clip=job_pb2.ClipSpec(start_seconds=0.5, duration_seconds=1.2),
        measure_quality=True,
    )
    figures, _, out_dir = encode_and_measure(source, spec, tmp_path)
    assert [(f.variant_index, f.width, f.height) for f in figures] == [(0, 320, 180), (1, 160, 90)]
    for figure in figures:
        assert_plausible(figure)
    assert figures[1].ssim < figures[0].ssim
    assert figures[1].psnr_db < figures[0].psnr_db
    # The joined DASH fragments stay in the work folder; only quality.json is added.
    assert not list(out_dir.glob("variant-*"))
    assert (out_dir / QUALITY_FILE_NAME).is_file()
