"""Benchmark: what each of kiln's additions to the ladder command costs, one toggle at a time.

kiln's HLS fMP4 ladder command (bench/ladder.py's ladder, built by worker.media.commands) against
the same command with one difference taken out, and against the plain command (every player
guarantee taken out: what the ladder was before the per-rung `fps=...:start_time=0`, the audio
`aresample` trim and the negative CTS offsets). The variants without a guarantee are for
measuring only: their outputs do not start every rendition at 0 with the audio.

Variants (argv transformations of kiln's own argv, printed at the start):
  kiln          as the worker runs it;
  plain         no fps per rung, no aresample trim, no negative CTS movflags;
  no-fps        no fps filter on any rung;
  fps-once      one fps filter on the decoded source, before split, instead of one per rung;
  no-aresample  the audio without the priming trim;
  no-negcts     no `movflags=+negative_cts_offsets` / `-avoid_negative_ts disabled`;
  no-forcekf    no -force_key_frames expression (keyframes from -g alone);
  no-progress   no `-progress pipe:1` (the worker reads progress from it);
  no-bframes    -bf 0 on every rung (what kiln's MPEG-TS single pass has, and its chunks not);
  threads-N     every encoder limited to N threads (not a difference from the plain command:
                a candidate saving on a machine with fewer cores than encoder threads).

Measured per run: wall time and the CPU time (user + system) of the ffmpeg child, from
os.wait4, so load from other work on the machine shows in the wall time but hardly in the CPU
time. Rounds are interleaved and the order rotates each round. Prints medians and each
variant's ratio to kiln (CPU and wall).

Run: .venv/bin/python bench/ladder_toggles.py [--rounds 3] [--seconds 10] [--only kiln,plain]
     [--cpus 0]  (taskset list; pins every ffmpeg run to these cores)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from bench.ladder import make_source, raw_argv  # noqa: E402
from worker.media.probe import probe  # noqa: E402

Argv = list[str]


def _without_flag(argv: Argv, flag: str) -> Argv:
    """argv with every (flag, value) pair of `flag` removed."""
    out: Argv = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        out.append(arg)
    return out


def _edit_graph(argv: Argv, edit: Callable[[str], str]) -> Argv:
    position = argv.index("-filter_complex") + 1
    return [*argv[:position], edit(argv[position]), *argv[position + 1 :]]


def _drop_rung_fps(graph: str) -> str:
    # Each rung's chain starts "[splitN]fps=<rate>:start_time=0,scale=...".
    return re.sub(r"fps=[^,;\[]*,", "", graph)


def no_fps(argv: Argv) -> Argv:
    return _edit_graph(argv, _drop_rung_fps)


def fps_once(argv: Argv) -> Argv:
    def edit(graph: str) -> str:
        rate = graph.split("fps=")[1].split(":", maxsplit=1)[0]
        # "[0:0]split=3..." becomes "[0:0]fps=<rate>:start_time=0,split=3...".
        source, rest = _drop_rung_fps(graph).split("split=", 1)
        return f"{source}fps={rate}:start_time=0,split={rest}"

    return _edit_graph(argv, edit)


def no_aresample(argv: Argv) -> Argv:
    return _without_flag(argv, "-af")


def no_negcts(argv: Argv) -> Argv:
    return _without_flag(_without_flag(argv, "-hls_segment_options"), "-avoid_negative_ts")


def no_forcekf(argv: Argv) -> Argv:
    return _without_flag(argv, "-force_key_frames:v")


def no_progress(argv: Argv) -> Argv:
    return _without_flag(argv, "-progress")


def encoder_threads(count: int) -> Callable[[Argv], Argv]:
    """Every encoder limited to `count` threads (FFmpeg's default for libx264 is 1.5 x cores
    frame threads each, so three rungs on 2 cores run nine)."""

    def limited(argv: Argv) -> Argv:
        position = argv.index("-f", argv.index("-filter_complex"))
        return [*argv[:position], "-threads", str(count), *argv[position:]]

    return limited


def no_bframes(argv: Argv) -> Argv:
    """-bf 0 on every rung, as kiln's MPEG-TS ladders have (and its chunks do not)."""
    position = argv.index("-f", argv.index("-filter_complex"))
    rungs = sum(1 for arg in argv if arg.startswith("-c:v:"))
    bf = [arg for rung in range(rungs) for arg in (f"-bf:v:{rung}", "0")]
    return [*argv[:position], *bf, *argv[position:]]


def plain(argv: Argv) -> Argv:
    return no_negcts(no_aresample(no_fps(argv)))


VARIANTS: dict[str, Callable[[Argv], Argv]] = {
    "kiln": lambda argv: argv,
    "plain": plain,
    "no-fps": no_fps,
    "fps-once": fps_once,
    "no-aresample": no_aresample,
    "no-negcts": no_negcts,
    "no-forcekf": no_forcekf,
    "no-progress": no_progress,
    "no-bframes": no_bframes,
    "threads-1": encoder_threads(1),
    "threads-2": encoder_threads(2),
}


def run_measured(argv: Argv, cpus: str | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the ffmpeg process) of one run."""
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg exited {process.returncode}: {' '.join(argv)}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--cpus", default=None)
    args = parser.parse_args()
    names = args.only.split(",")

    source = make_source(args.seconds)
    info = asyncio.run(probe(str(source)))
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="kiln-toggles-") as folder:
        out = Path(folder) / "out"
        kiln_argv = raw_argv(source, info, out)
        print("kiln argv:", " ".join(kiln_argv), flush=True)
        for name in names:
            if name != "kiln":
                changed = VARIANTS[name](kiln_argv)
                removed = [arg for arg in kiln_argv if arg not in changed]
                added = [arg for arg in changed if arg not in kiln_argv]
                print(f"{name}: without {removed}, with {added}", flush=True)
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                wall, cpu = run_measured(VARIANTS[name](kiln_argv), args.cpus)
                walls[name].append(wall)
                cpus[name].append(cpu)
                print(f"round {round_index + 1} {name:12s} wall {wall:6.2f} s cpu {cpu:6.2f} s")
    base_cpu, base_wall = statistics.median(cpus["kiln"]), statistics.median(walls["kiln"])
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| variant | median CPU (s) | CPU / kiln | median wall (s) | wall / kiln | CPU runs |")
    print("|---|---|---|---|---|---|")
    for name in names:
        cpu, wall = statistics.median(cpus[name]), statistics.median(walls[name])
        runs = " / ".join(f"{v:.2f}" for v in cpus[name])
        print(
            f"| {name} | {cpu:.2f} | {cpu / base_cpu:.3f} | {wall:.2f} | "
            f"{wall / base_wall:.3f} | {runs} |"
        )


if __name__ == "__main__":
    main()
