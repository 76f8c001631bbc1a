"""Benchmark: what the quality-control read-back (worker.media.qc, on by default) costs on top of
a ladder encode.

The ladder of bench/quality_cost.py: 10 s of 720p30 synthetic video with temporal noise and a
tone, HLS 720p / 480p / 360p, H.264 STANDARD (x264 veryfast), 2 s segments, built by kiln's own
command builder (its source and encode are reused from there).

Measured in one run, interleaved (the order of the two read-backs alternates), at least 3 rounds:
  (a) encode: the ladder's ffmpeg run and packaging, as the worker does it;
  (b) kiln's QC pass (worker.media.qc.check_output) over that output: one process decoding
      the smallest rung with the detectors, demuxing the others, the audio once; the source is
      not read (a clean source: nothing to excuse);
  (c) raw: the usual hand-written way, one ffmpeg per detector (blackdetect, freezedetect,
      silencedetect, ebur128 peak=true) on the same rung, and one `-f null` run per reading
      for errors and durations (decoding what kiln decodes, demuxing what it demuxes).
Prints medians, the overhead (b)/(a) against the 15 % budget, and (c)/(b); appends them to
bench/RESULTS.md.

Run: .venv/bin/python bench/qc_cost.py [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from kiln.v1 import job_pb2  # noqa: E402

from bench.quality_cost import (  # noqa: E402
    RUNGS,
    WORK,
    encode,
    ffmpeg_version,
    ladder_spec,
    make_source,
)
from common import qc  # noqa: E402
from worker.media.input_access import InputAccess  # noqa: E402
from worker.media.probe import probe  # noqa: E402
from worker.media.qc import check_output, readback_plan  # noqa: E402
from worker.media.qc_readback import BLACK, FROZEN, LOUDNESS, SILENCE  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
T = TypeVar("T")
BUDGET = 0.15


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the ffmpeg runs), user + system."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(run: Callable[[], T]) -> tuple[float, float, T]:
    """(wall seconds, CPU seconds, result) of one run."""
    wall, cpu = time.monotonic(), cpu_seconds()
    result = run()
    return time.monotonic() - wall, cpu_seconds() - cpu, result


def encoded(source, info, out_dir) -> float:
    return asyncio.run(encode(source, info, out_dir))


def kiln_qc(info, out_dir, work_dir, seconds: float) -> job_pb2.QcReport:
    report, _ = asyncio.run(
        check_output(
            input_path=None,
            spec=ladder_spec(),
            info=info,
            expected_seconds=seconds,
            out_dir=out_dir,
            work_dir=work_dir,
            access=InputAccess(),
            cancel_event=asyncio.Event(),
        )
    )
    return report


def raw_qc(info, out_dir, work_dir) -> None:
    plan = readback_plan(ladder_spec(), info, out_dir, work_dir)
    detected = plan.readings[plan.detector or 0].path
    base = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info"]
    for video in (BLACK, FROZEN):
        subprocess.run([*base, "-i", detected, "-vf", video, "-an", "-f", "null", "-"],
                       check=True, capture_output=True)  # fmt: skip
    for audio in (SILENCE, LOUDNESS):
        subprocess.run([*base, "-i", detected, "-af", audio, "-vn", "-f", "null", "-"],
                       check=True, capture_output=True)  # fmt: skip
    for reading in plan.readings:
        # What kiln reads of each: decoded (the detected rung, the audio) or demuxed.
        copy = ["-c", "copy"] if reading.video_detectors is False else []
        subprocess.run([*base, "-i", reading.path, *copy, "-f", "null", "-"],
                       check=True, capture_output=True)  # fmt: skip


RUNS = ("encode", "kiln", "raw")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    source = make_source(args.seconds)
    info = asyncio.run(probe(str(source)))
    wall: dict[str, list[float]] = {name: [] for name in RUNS}
    cpu: dict[str, list[float]] = {name: [] for name in RUNS}
    verdict = ""
    for round_index in range(max(args.rounds, 3)):
        folder = WORK / f"qc-round-{round_index}"
        shutil.rmtree(folder, ignore_errors=True)
        out_dir = folder / "out"
        out_dir.mkdir(parents=True)
        runs: dict[str, Callable[[], object]] = {
            "encode": partial(encoded, source, info, out_dir),
            "kiln": partial(kiln_qc, info, out_dir, folder / "qc", float(args.seconds)),
            "raw": partial(raw_qc, info, out_dir, folder / "raw"),
        }
        # The two read-backs of the same output alternate which goes first.
        order = ["encode", "kiln", "raw"] if round_index % 2 == 0 else ["encode", "raw", "kiln"]
        for name in order:
            seconds, used, result = measured(runs[name])
            wall[name].append(seconds)
            cpu[name].append(used)
            if isinstance(result, job_pb2.QcReport):
                verdict = ", ".join(
                    f"{c.name} {c.value:g} {qc.verdict_word(c.verdict)}" for c in result.checks
                )
        latest = ", ".join(
            f"{name} {wall[name][-1]:.2f} s ({cpu[name][-1]:.2f} s CPU)" for name in RUNS
        )
        print(f"round {round_index + 1}: {latest}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)

    # Each round's QC against the encode it read: the load of a shared machine drifts between
    # rounds, and a ratio within one round compares runs made under about the same load.
    ratios = [k / e for k, e in zip(wall["kiln"], wall["encode"], strict=True)]
    cpu_ratios = [k / e for k, e in zip(cpu["kiln"], cpu["encode"], strict=True)]
    figures = {
        "wall": statistics.median(ratios),
        "cpu": statistics.median(cpu_ratios),
        "raw": statistics.median(wall["raw"]) / statistics.median(wall["kiln"]),
    }
    within = "within" if figures["wall"] <= BUDGET else "OVER"
    print(
        f"QC pass / encode, median of the rounds: {figures['wall']:.1%} of the wall time "
        f"({within} the {BUDGET:.0%} budget), {figures['cpu']:.1%} of the CPU time; raw one "
        f"process per check takes {figures['raw']:.2f}x kiln's pass"
    )
    print(f"checks of the last round: {verdict}")
    record(args, wall, cpu, ratios, figures, verdict, within)


def record(args, wall, cpu, ratios, figures, verdict, within) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(
        f"| {name} | "
        + " / ".join(f"{w:.2f} ({c:.2f})" for w, c in zip(wall[name], cpu[name], strict=True))
        + f" | {statistics.median(wall[name]):.2f} | {statistics.median(cpu[name]):.2f} |"
        for name in RUNS
    )
    text = f"""
## qc_cost — {stamp}

Machine: {platform.node() or "vm"}, {os.cpu_count()} cores, {platform.machine()}, Python \
{platform.python_version()}, {ffmpeg_version()}; load average at the end {load} (shared machine).
Source {args.seconds} s 720p30 (noise, 6 Mb/s, a tone); HLS ladder {" / ".join(RUNGS)}, H.264
STANDARD (x264 veryfast), 2 s segments; {len(wall["encode"])} rounds.

| run | rounds: wall s (CPU s) | median wall (s) | median CPU (s) |
|---|---|---|---|
{rows}

- encode = the ladder's ffmpeg run + packaging; kiln = `check_output` (one process: the
  smallest rung decoded with blackdetect + freezedetect, silencedetect + ebur128 peak=true on
  the audio, the other rungs demuxed); raw = one ffmpeg per detector on that rung
  plus one `-f null` run per reading (decoding or demuxing as kiln does).
- QC pass / encode per round: {" / ".join(f"{r:.1%}" for r in ratios)}. Median: \
**{figures["wall"]:.1%} of the encode's wall time** ({within} the {BUDGET:.0%} budget), \
{figures["cpu"]:.1%} of its CPU time. The raw way takes {figures["raw"]:.2f}x kiln's pass.
- Checks of the last round: {verdict}.
"""
    with RESULTS.open("a") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
