"""Benchmark: the FFmpeg work of a chunked HLS ladder against its single pass, without the
service around it.

bench/chunked.py measures chunking through kiln (claims, probes, uploads, the merge); this runs
only the FFmpeg commands kiln's builders make for the same output, one after another in this
process, so what is left is the cost of cutting the encode itself:
  single      the one-process MPEG-TS ladder (worker.media.commands.build_command);
  chunks      each chunk's command (worker.media.chunks.build_video_chunk_command, seeking to
              its start with -ss before -i) and the audio command, as the CHUNK and AUDIO tasks
              run them;
  chunks-bf0  the same with `-bf 0` on every rung, as the single pass has for MPEG-TS (the chunk
              builder leaves B-frames on), so that both encode with the same settings.
CPU time (user + system of each ffmpeg, os.wait4) and wall, interleaved rounds, medians.

Run: .venv/bin/python bench/chunk_parts.py [--rounds 3] [--seconds 10] [--chunk-seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from bench.chunked import ladder  # noqa: E402
from bench.ladder import make_source  # noqa: E402
from bench.ladder_toggles import Argv, no_bframes, run_measured  # noqa: E402
from worker.media.chunks import (  # noqa: E402
    ChunkWindow,
    build_audio_command,
    build_video_chunk_command,
)
from worker.media.commands import build_command  # noqa: E402
from worker.media.probe import probe  # noqa: E402

# The ladder of bench/chunked.py's default run: MPEG-TS HLS 1080p / 720p / 480p.
LADDER = ("hls-ts", ["1080p", "720p", "480p"])

# server.jobs.chunk_plan's lead: every chunk and the audio are shifted by it.
TIMESTAMP_LEAD_SECONDS = 10.0


def chunk_argvs(source: Path, info, out_dir: Path, chunk_seconds: float) -> list[Argv]:
    """Every chunk's command and the audio's, as the CHUNK and AUDIO tasks build them."""
    spec = ladder(*LADDER)
    count = max(1, math.ceil(info.duration_seconds / chunk_seconds - 1e-9))
    argvs = []
    for index in range(count):
        end = info.duration_seconds if index == count - 1 else (index + 1) * chunk_seconds
        window = ChunkWindow(
            index=index,
            count=count,
            start=index * chunk_seconds,
            end=end,
            # Segments are numbered across the output (6 s segments).
            first_segment=round(index * chunk_seconds / 6),
            timestamp_offset=TIMESTAMP_LEAD_SECONDS,
        )
        command = build_video_chunk_command(
            input_path=str(source), spec=spec, info=info, out_dir=out_dir, window=window
        )
        argvs.append(command.plan.argv)
    audio = build_audio_command(
        input_path=str(source),
        spec=spec,
        info=info,
        out_dir=out_dir,
        timestamp_offset=TIMESTAMP_LEAD_SECONDS,
    )
    return [*argvs, audio.plan.argv]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--chunk-seconds", type=float, default=6.0)
    args = parser.parse_args()
    source = make_source(args.seconds)
    info = asyncio.run(probe(str(source)))
    names = ("single", "chunks", "chunks-bf0")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="kiln-chunk-parts-") as folder:
        out = Path(folder) / "out"

        def commands(name: str) -> list[Argv]:
            if name == "single":
                return [
                    build_command(
                        input_path=str(source), spec=ladder(*LADDER), info=info, out_dir=out
                    ).argv
                ]
            argvs = chunk_argvs(source, info, out, args.chunk_seconds)
            if name == "chunks-bf0":
                # The video commands only; the last is the audio's.
                argvs = [no_bframes(argv) for argv in argvs[:-1]] + argvs[-1:]
            return argvs

        for argv in commands("chunks"):
            print("chunk command:", " ".join(argv), flush=True)
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                (out / "audio").mkdir()
                wall = cpu = 0.0
                for argv in commands(name):
                    one_wall, one_cpu = run_measured(argv, None)
                    wall, cpu = wall + one_wall, cpu + one_cpu
                results[name].append((wall, cpu))
                print(f"round {round_index + 1} {name:10s} wall {wall:6.2f} s cpu {cpu:6.2f} s")
    print(f"load average {os.getloadavg()[0]:.2f}")
    base = statistics.median(cpu for _, cpu in results["single"])
    for name in names:
        cpu = statistics.median(c for _, c in results[name])
        wall = statistics.median(w for w, _ in results[name])
        runs = " / ".join(f"{c:.2f}" for _, c in results[name])
        print(f"| {name} | {cpu:.2f} | {cpu / base:.3f} | {wall:.2f} | {runs} |")


if __name__ == "__main__":
    main()
