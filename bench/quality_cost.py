"""Benchmark: what measured quality (OutputSpec.measure_quality) costs on top of a ladder encode.

Source: 10 s of 720p30 synthetic video with temporal noise and a tone. Ladder: HLS 720p / 480p /
360p, H.264 STANDARD (x264 veryfast), 2 s segments, built by kiln's own command builder.

Measured in one run, interleaved (the order rotates each round), at least 3 rounds:
  (a) encode: the ladder's ffmpeg run and packaging, as the worker does it;
  (b) kiln's quality pass (worker.media.quality.measure_quality) over that output: one process
      decoding the source once and every variant once, ssim + psnr per variant;
  (c) raw: the usual hand-written way, one ffmpeg per variant and metric
      (`-i variant -i source -lavfi "[1:v]scale=WxH[r];[0:v][r]ssim" -f null -`), each
      decoding the source again.
Prints medians, the overhead (b)/(a) and (c)/(b), and appends them to bench/RESULTS.md.

Run: .venv/bin/python bench/quality_cost.py [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from kiln.v1 import job_pb2  # noqa: E402

from worker.media.commands import build_command  # noqa: E402
from worker.media.ffmpeg import run_ffmpeg  # noqa: E402
from worker.media.input_access import InputAccess  # noqa: E402
from worker.media.packaging import finalize_output  # noqa: E402
from worker.media.probe import probe  # noqa: E402
from worker.media.quality import (  # noqa: E402
    encoded_location,
    measure_quality,
    measured_variants,
)

WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "RESULTS.md"
RUNGS = ("720p", "480p", "360p")


def make_source(seconds: int) -> Path:
    source = WORK / f"source_720p30_{seconds}s.mp4"
    if source.exists():
        return source
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         # Temporal noise keeps the encoder honest: testsrc2 alone compresses too well.
         "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M",
         "-g", "60", "-c:a", "aac", str(source)],
        check=True,
    )  # fmt: skip
    return source


def ladder_spec() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution=rung) for rung in RUNGS
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=2),
        measure_quality=True,
    )


async def encode(source: Path, info: job_pb2.InputInfo, out_dir: Path) -> float:
    spec = ladder_spec()
    started = time.monotonic()
    plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)
    await run_ffmpeg(
        plan.argv, duration=plan.expected_duration, on_progress=None, cancel_event=asyncio.Event()
    )
    await finalize_output(spec, info, out_dir, plan)
    return time.monotonic() - started


async def kiln_quality(
    source: Path, info: job_pb2.InputInfo, out_dir: Path, work_dir: Path
) -> tuple[float, list[job_pb2.VariantQuality]]:
    started = time.monotonic()
    figures, _ = await measure_quality(
        input_path=str(source),
        spec=ladder_spec(),
        info=info,
        out_dir=out_dir,
        work_dir=work_dir,
        access=InputAccess(),
        cancel_event=asyncio.Event(),
    )
    return time.monotonic() - started, figures


def raw_quality(source: Path, info: job_pb2.InputInfo, out_dir: Path) -> float:
    spec = ladder_spec()
    started = time.monotonic()
    for variant in measured_variants(spec, info):
        [playlist] = encoded_location(spec, variant.position, out_dir)
        for metric in ("ssim", "psnr"):
            graph = f"[1:v]scale={variant.width}:{variant.height}[r];[0:v][r]{metric}"
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(playlist),
                 "-i", str(source), "-lavfi", graph, "-f", "null", "-"],
                check=True,
            )  # fmt: skip
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    source = make_source(args.seconds)
    info = asyncio.run(probe(str(source)))
    times: dict[str, list[float]] = {"encode": [], "kiln": [], "raw": []}
    figures: list[job_pb2.VariantQuality] = []
    for round_index in range(max(args.rounds, 3)):
        folder = WORK / f"quality-round-{round_index}"
        shutil.rmtree(folder, ignore_errors=True)
        out_dir = folder / "out"
        out_dir.mkdir(parents=True)
        times["encode"].append(asyncio.run(encode(source, info, out_dir)))
        # The two measurements of the same output alternate which goes first.
        order = ["kiln", "raw"] if round_index % 2 == 0 else ["raw", "kiln"]
        for name in order:
            if name == "kiln":
                seconds, figures = asyncio.run(kiln_quality(source, info, out_dir, folder / "q"))
            else:
                seconds = raw_quality(source, info, out_dir)
            times[name].append(seconds)
        latest = ", ".join(f"{name} {values[-1]:.2f} s" for name, values in times.items())
        print(f"round {round_index + 1}: {latest}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    overhead = medians["kiln"] / medians["encode"]
    raw_ratio = medians["raw"] / medians["kiln"]
    print(
        f"medians: encode {medians['encode']:.2f} s, kiln quality pass {medians['kiln']:.2f} s "
        f"(+{overhead:.0%} of the encode), raw per-variant-per-metric {medians['raw']:.2f} s "
        f"({raw_ratio:.2f}x kiln's pass)"
    )
    record(args, times, medians, overhead, raw_ratio, figures)


def record(args, times, medians, overhead, raw_ratio, figures) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(
        f"| {name} | " + " / ".join(f"{v:.2f}" for v in times[name]) + f" | {medians[name]:.2f} |"
        for name in ("encode", "kiln", "raw")
    )
    measured = ", ".join(
        f"{RUNGS[q.variant_index]} {q.width}x{q.height} SSIM {q.ssim:.4f} PSNR {q.psnr_db:.2f} dB"
        for q in figures
    )
    text = f"""
## quality_cost — {stamp}

Machine: {platform.node() or "vm"}, {os.cpu_count()} cores, {platform.machine()}, Python \
{platform.python_version()}, {ffmpeg_version()}; load average at the end {load} (shared machine).
Source {args.seconds} s 720p30 (noise, 6 Mb/s); HLS ladder {" / ".join(RUNGS)}, H.264 STANDARD
(x264 veryfast), 2 s segments; {len(times["encode"])} rounds, seconds per round.

| run | rounds (s) | median (s) |
|---|---|---|
{rows}

- encode = the ladder's ffmpeg run + packaging; kiln = `measure_quality` (one process: source
  decoded once, each variant once, ssim + psnr per variant); raw = one ffmpeg per variant and
  metric ({2 * len(RUNGS)} processes, each decoding the source again).
- Measured quality adds **{overhead:.0%}** to the encode's wall time; the raw way takes
  {raw_ratio:.2f}x kiln's pass.
- Figures of the last round: {measured}.
"""
    with RESULTS.open("a") as handle:
        handle.write(text)


def ffmpeg_version() -> str:
    first = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    return " ".join(first.split()[:3])


if __name__ == "__main__":
    main()
