"""Benchmark: where a single-pass ladder task spends its time besides the ffmpeg encode.

bench/ladder.py's (a) kiln figure is Create -> `completed`: it holds the probe task, the encode
and everything the transcode task runs after ffmpeg exits (worker/tasks/transcode.py), while (b)
raw is the encode alone. This runs those steps one by one, as the worker calls them, on
bench/ladder.py's ladder, and prices each against the encode of the same round:
  probe     the probe task's ffprobe of the source (worker.media.probe);
  encode    kiln's ladder command through run_ffmpeg (progress read from its pipe);
  finalize  finalize_output: playlists rewritten from the produced segments (ffprobe per
            rendition for CODECS, BANDWIDTH from the segment sizes);
  qc        check_output: the quality-control read-back (on by default; one ffmpeg process);
  describe  describe_folder: an OutputFile per file (ffprobe for each init segment);
  at once   the three as the transcode task runs them since 2026-12-07: finalize then describe,
            beside the QC read-back (worker.media.together.both), timed as one step against
            the sum of the three above. Run on the same output again (finalize rewrites the
            master from the segments, which it leaves as they are; QC rewrites qc.json).
Storing on local storage is a rename of the folder (not measured); dispatch of the two tasks is
bench/dispatch_latency.py's (~20-30 ms each).

Wall and CPU (user + system of this process and its reaped children) per step, medians of the
rounds. Run: .venv/bin/python bench/ladder_after.py [--rounds 3] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from bench.ladder import ladder_spec, make_source  # noqa: E402
from common.qc import QC_FILE_NAME  # noqa: E402
from worker.media.commands import build_command  # noqa: E402
from worker.media.ffmpeg import run_ffmpeg  # noqa: E402
from worker.media.input_access import InputAccess  # noqa: E402
from worker.media.packaging import finalize_output  # noqa: E402
from worker.media.probe import probe  # noqa: E402
from worker.media.qc import check_output  # noqa: E402
from worker.media.together import both  # noqa: E402
from worker.tasks.run import describe_folder  # noqa: E402

STEPS = ("probe", "encode", "finalize", "qc", "describe", "at once")


def cpu_seconds() -> float:
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def measured(step: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    await step()
    return time.perf_counter() - wall, cpu_seconds() - cpu


async def one_round(source: Path, folder: Path) -> dict[str, tuple[float, float]]:
    spec = ladder_spec()
    out_dir = folder / "out"
    out_dir.mkdir(parents=True)
    info = await probe(str(source))
    plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)

    async def encode() -> None:
        await run_ffmpeg(
            InputAccess().apply(plan.argv),
            duration=plan.expected_duration,
            on_progress=None,
            cancel_event=asyncio.Event(),
        )

    async def qc() -> None:
        await check_output(
            input_path=str(source),
            spec=spec,
            info=info,
            expected_seconds=plan.expected_duration,
            out_dir=out_dir,
            work_dir=folder / "qc",
            access=InputAccess(),
            cancel_event=asyncio.Event(),
        )

    async def finalize_and_describe() -> None:
        await finalize_output(spec, info, out_dir, plan)
        await describe_folder(out_dir, leave_out=(QC_FILE_NAME,))

    steps: dict[str, Callable[[], Awaitable[object]]] = {
        "probe": lambda: probe(str(source)),
        "encode": encode,
        "finalize": lambda: finalize_output(spec, info, out_dir, plan),
        "qc": qc,
        "describe": lambda: describe_folder(out_dir),
        "at once": lambda: both(finalize_and_describe(), qc()),
    }
    return {name: await measured(steps[name]) for name in STEPS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    source = make_source(args.seconds)
    rounds: list[dict[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="kiln-after-") as tmp:
        for index in range(args.rounds):
            folder = Path(tmp) / f"round-{index}"
            rounds.append(asyncio.run(one_round(source, folder)))
            shutil.rmtree(folder)
            line = ", ".join(f"{n} {w:.2f} s ({c:.2f} CPU)" for n, (w, c) in rounds[-1].items())
            print(f"round {index + 1}: {line}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| step | median wall (s) | median CPU (s) | wall / encode | CPU / encode |")
    print("|---|---|---|---|---|")
    serial = [sum(r[n][0] for n in ("finalize", "qc", "describe")) for r in rounds]
    at_once = [r["at once"][0] for r in rounds]
    print(
        "after the encode, wall: one after another (sum) "
        + " / ".join(f"{w:.2f}" for w in serial)
        + " s; at once "
        + " / ".join(f"{w:.2f}" for w in at_once)
        + " s; paired ratio median "
        + f"{statistics.median(a / b for a, b in zip(at_once, serial, strict=True)):.2f}"
    )
    for name in STEPS:
        # Each step against the encode of its own round (the load drifts between rounds).
        wall = statistics.median(r[name][0] for r in rounds)
        cpu = statistics.median(r[name][1] for r in rounds)
        wall_share = statistics.median(r[name][0] / r["encode"][0] for r in rounds)
        cpu_share = statistics.median(r[name][1] / r["encode"][1] for r in rounds)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall_share:.1%} | {cpu_share:.1%} |")


if __name__ == "__main__":
    main()
