"""Benchmark: what muxing the audio into a chunked MPEG-TS ladder adds to its merge.

The chunks of a 60 s 720p / 480p / 360p ladder (6 s segments, the 2 s first chunk, then one
chunk to the end, as KILN_CHUNK_SECONDS=60 plans it) and its audio are encoded once by the
worker's own builders (worker.media.chunks), then each round times what the MERGE task does:
  fetch     every segment copied into a scratch folder (the merge's fetch on local storage);
  remux     each variant's first timestamp read (ffprobe), then the one FFmpeg of
            worker.media.ts_mux.build_mux_command (stream copy), wall and CPU;
  playlists the playlists and the master written (all the merge did before the remux).
The remux is itself the raw FFmpeg command doing the work (no other process could do less
than a stream copy of every segment). Medians of the rounds.

Run: .venv/bin/python bench/ts_mux.py [--rounds 3] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from bench.chunked import ladder  # noqa: E402
from bench.ladder import make_source  # noqa: E402
from bench.ladder_toggles import run_measured  # noqa: E402
from worker.media.chunks import (  # noqa: E402
    ChunkWindow,
    build_audio_command,
    build_video_chunk_command,
)
from worker.media.merge import (  # noqa: E402
    joined_renditions,
    measure_chunk_renditions,
    write_hls_playlists,
)
from worker.media.probe import probe  # noqa: E402
from worker.media.text_tracks import first_timestamp  # noqa: E402
from worker.media.ts_mux import VariantToMux, build_mux_command  # noqa: E402

RUNGS = ["720p", "480p", "360p"]
SEGMENT_SECONDS = 6.0
FIRST_CHUNK_SECONDS = 2.0
# server.jobs.chunk_plan's lead: every chunk and the audio are shifted by it.
TIMESTAMP_LEAD_SECONDS = 10.0


def encode_pieces(source: Path, out: Path, seconds: float):
    """The chunks and the audio, as the CHUNK and AUDIO tasks make them; their renditions."""
    spec = ladder("hls-ts", RUNGS)
    info = asyncio.run(probe(str(source)))
    windows = [(0.0, FIRST_CHUNK_SECONDS, 0), (FIRST_CHUNK_SECONDS, seconds, 1)]
    chunks = []
    for index, (start, end, first_segment) in enumerate(windows):
        window = ChunkWindow(index, len(windows), start, end, first_segment, TIMESTAMP_LEAD_SECONDS)
        command = build_video_chunk_command(
            input_path=str(source), spec=spec, info=info, out_dir=out, window=window
        )
        run_measured(command.plan.argv, None)
        chunks.append(asyncio.run(measure_chunk_renditions(out, command.playlists)))
    audio = build_audio_command(
        input_path=str(source),
        spec=spec,
        info=info,
        out_dir=out,
        timestamp_offset=TIMESTAMP_LEAD_SECONDS,
    )
    run_measured(audio.plan.argv, None)
    [audio_rendition] = asyncio.run(measure_chunk_renditions(out, audio.playlists))
    return list(joined_renditions(chunks).values()), audio_rendition


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    source = make_source(args.seconds)
    steps = ("fetch", "remux", "remux-cpu", "playlists")
    results: dict[str, list[float]] = {step: [] for step in steps}
    with tempfile.TemporaryDirectory(prefix="kiln-ts-mux-") as folder:
        stored = Path(folder) / "stored"
        print(f"encoding the chunks of a {args.seconds} s {'/'.join(RUNGS)} ladder ...", flush=True)
        variants, audio = encode_pieces(source, stored, args.seconds)
        total = sum(s.size_bytes for r in [*variants, audio] for s in r.segments)
        count = sum(len(r.segments) for r in variants)
        print(f"{count} video segments, {len(audio.segments)} audio, {total / 1e6:.1f} MB")
        for round_index in range(args.rounds):
            scratch = Path(folder) / "scratch"
            shutil.rmtree(scratch, ignore_errors=True)
            started = time.perf_counter()
            local = {}
            for rendition in [*variants, audio]:
                (scratch / "pieces" / rendition.name).mkdir(parents=True)
                for segment in rendition.segments:
                    target = scratch / "pieces" / segment.path
                    shutil.copyfile(stored / segment.path, target)
                    local[segment.path] = target
            results["fetch"].append(time.perf_counter() - started)
            started = time.perf_counter()
            to_mux = [
                VariantToMux(
                    variant,
                    [local[s.path] for s in variant.segments],
                    asyncio.run(first_timestamp(None, local[variant.segments[0].path])),
                )
                for variant in variants
            ]
            plan = build_mux_command(
                variants=to_mux,
                audio_files=[local[s.path] for s in audio.segments],
                work_dir=scratch / "pieces",
                out_dir=scratch / "muxed",
            )
            _, cpu = run_measured(plan.argv, None)
            results["remux"].append(time.perf_counter() - started)
            results["remux-cpu"].append(cpu)
            assert all(path.exists() for path in plan.outputs)
            started = time.perf_counter()
            write_hls_playlists(scratch / "out", variants, audio, segment_seconds=SEGMENT_SECONDS)
            results["playlists"].append(time.perf_counter() - started)
            print(
                f"round {round_index + 1} "
                + " ".join(f"{step} {results[step][-1]:.3f} s" for step in steps),
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| step | median s | runs |")
    for step in steps:
        runs = " / ".join(f"{value:.3f}" for value in results[step])
        print(f"| {step} | {statistics.median(results[step]):.3f} | {runs} |")


if __name__ == "__main__":
    main()
