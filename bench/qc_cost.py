"""Benchmark: what the quality-control read-back (worker.media.qc, on by default) costs on top of
a ladder encode.

The ladder of bench/quality_cost.py: 10 s of 720p30 synthetic video with temporal noise and a
tone, HLS 720p / 480p / 360p, H.264 STANDARD (x264 veryfast), 2 s segments, built by kiln's own
command builder (its source and encode are reused from there).

Measured in one run, interleaved (the order of the two read-backs alternates), at least 3 rounds:
  (a) encode: the ladder's ffmpeg run and packaging, as the worker does it;
  (b) kiln's QC pass (worker.media.qc.check_output) over that output: one process decoding
      every rung once, detectors on the smallest rung, the audio once; the source is not read
      (a clean source: nothing to excuse);
  (c) raw: the usual hand-written way, one ffmpeg per detector (blackdetect, freezedetect,
      silencedetect, ebur128 peak=true) on the same rung and one `-f null` decode per rung
      for errors and durations.
Prints medians, the overhead (b)/(a) against the 15 % budget, and (c)/(b); appends them to
bench/RESULTS.md.

Run: .venv/bin/python bench/qc_cost.py [--rounds 3] [--seconds 10]
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
BUDGET = 0.15


async def kiln_qc(info, out_dir, work_dir, seconds: float):
    started = time.monotonic()
    report, _ = await check_output(
        input_path=None,
        spec=ladder_spec(),
        info=info,
        expected_seconds=seconds,
        out_dir=out_dir,
        work_dir=work_dir,
        access=InputAccess(),
        cancel_event=asyncio.Event(),
    )
    return time.monotonic() - started, report


def raw_qc(info, out_dir, work_dir) -> float:
    plan = readback_plan(ladder_spec(), info, out_dir, work_dir)
    detected = plan.readings[plan.detector or 0].path
    base = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info"]
    started = time.monotonic()
    for video in (BLACK, FROZEN):
        subprocess.run([*base, "-i", detected, "-vf", video, "-an", "-f", "null", "-"],
                       check=True, capture_output=True)  # fmt: skip
    for audio in (SILENCE, LOUDNESS):
        subprocess.run([*base, "-i", detected, "-af", audio, "-vn", "-f", "null", "-"],
                       check=True, capture_output=True)  # fmt: skip
    for reading in plan.readings:
        subprocess.run([*base, "-i", reading.path, "-f", "null", "-"],
                       check=True, capture_output=True)  # fmt: skip
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    source = make_source(args.seconds)
    info = asyncio.run(probe(str(source)))
    times: dict[str, list[float]] = {"encode": [], "kiln": [], "raw": []}
    verdict = ""
    for round_index in range(max(args.rounds, 3)):
        folder = WORK / f"qc-round-{round_index}"
        shutil.rmtree(folder, ignore_errors=True)
        out_dir = folder / "out"
        out_dir.mkdir(parents=True)
        times["encode"].append(asyncio.run(encode(source, info, out_dir)))
        order = ["kiln", "raw"] if round_index % 2 == 0 else ["raw", "kiln"]
        for name in order:
            if name == "kiln":
                seconds, report = asyncio.run(
                    kiln_qc(info, out_dir, folder / "qc", float(args.seconds))
                )
                verdict = ", ".join(
                    f"{c.name} {c.value:g} {qc.verdict_word(c.verdict)}" for c in report.checks
                )
            else:
                seconds = raw_qc(info, out_dir, folder / "raw")
            times[name].append(seconds)
        latest = ", ".join(f"{name} {values[-1]:.2f} s" for name, values in times.items())
        print(f"round {round_index + 1}: {latest}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    overhead = medians["kiln"] / medians["encode"]
    raw_ratio = medians["raw"] / medians["kiln"]
    within = "within" if overhead <= BUDGET else "OVER"
    print(
        f"medians: encode {medians['encode']:.2f} s, kiln QC pass {medians['kiln']:.2f} s "
        f"(+{overhead:.1%} of the encode, {within} the {BUDGET:.0%} budget), raw one process "
        f"per check {medians['raw']:.2f} s ({raw_ratio:.2f}x kiln's pass)"
    )
    print(f"checks of the last round: {verdict}")
    record(args, times, medians, overhead, raw_ratio, verdict, within)


def record(args, times, medians, overhead, raw_ratio, verdict, within) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(
        f"| {name} | " + " / ".join(f"{v:.2f}" for v in times[name]) + f" | {medians[name]:.2f} |"
        for name in ("encode", "kiln", "raw")
    )
    text = f"""
## qc_cost — {stamp}

Machine: {platform.node() or "vm"}, {os.cpu_count()} cores, {platform.machine()}, Python \
{platform.python_version()}, {ffmpeg_version()}; load average at the end {load} (shared machine).
Source {args.seconds} s 720p30 (noise, 6 Mb/s, a tone); HLS ladder {" / ".join(RUNGS)}, H.264
STANDARD (x264 veryfast), 2 s segments; {len(times["encode"])} rounds, seconds per round.

| run | rounds (s) | median (s) |
|---|---|---|
{rows}

- encode = the ladder's ffmpeg run + packaging; kiln = `check_output` (one process: every rung
  decoded once, blackdetect + freezedetect on the smallest rung, silencedetect + ebur128
  peak=true on the audio); raw = one ffmpeg per detector on that rung plus one decode per rung.
- The QC pass adds **{overhead:.1%}** to the encode's wall time ({within} the {BUDGET:.0%}
  budget); the raw way takes {raw_ratio:.2f}x kiln's pass.
- Checks of the last round: {verdict}.
"""
    with RESULTS.open("a") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
