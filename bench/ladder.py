"""Benchmark: an HLS H.264 ladder through kiln against raw FFmpeg doing the same work.

Source: 60 s of 1080p30 synthetic video with motion and noise (about 16 Mb/s, 2 s GOP) and a
tone. Ladder: 1080p / 720p / 480p, x264 veryfast (kiln's STANDARD tier), 6 s fMP4 segments.

Measured in one run, interleaved (the order rotates each round), at least 3 rounds:
  (a) kiln: Create -> the Watch `completed` event, server and worker as real processes;
  (b) raw: the single FFmpeg command with split + var_stream_map producing the same ladder
      (kiln's own command builder prints it, so both encode with identical settings);
  (c) three separate FFmpeg processes, one per rendition (each decodes the source again).
Prints medians and the ratios kiln/raw (target <= 1.05) and three-process/kiln (target >= 1.3),
and appends them to bench/RESULTS.md.

Run: .venv/bin/python bench/ladder.py [--rounds 3] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import grpc  # noqa: E402
import httpx  # noqa: E402
from kiln.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc  # noqa: E402

from worker.media.commands import build_command  # noqa: E402
from worker.media.probe import probe  # noqa: E402

WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "RESULTS.md"
RUNGS = ("1080p", "720p", "480p")


def make_source(seconds: int) -> Path:
    source = WORK / f"source_1080p30_{seconds}s.mp4"
    if source.exists():
        return source
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"making the {seconds} s 1080p30 source (once) ...", flush=True)
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            # Temporal noise keeps the encoder honest: testsrc2 alone compresses too well.
            "-vf",
            "noise=alls=12:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            "16M",
            "-maxrate",
            "16M",
            "-bufsize",
            "32M",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            str(source),
        ],
        check=True,
    )
    return source


def ladder_spec(rungs=RUNGS) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(
                codec=job_pb2.VIDEO_CODEC_H264, resolution=r, quality=job_pb2.QUALITY_STANDARD
            )
            for r in rungs
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=6),
        hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4),
    )


def raw_argv(source: Path, info, out_dir: Path, rungs=RUNGS) -> list[str]:
    plan = build_command(
        input_path=str(source), spec=ladder_spec(rungs), info=info, out_dir=out_dir
    )
    return plan.argv


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Kiln:
    """`kiln up` (server + one worker slot) in a scratch folder, on SQLite."""

    def __init__(self, root: Path, media: Path) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'gen'}",
            KILN_DATA_DIR=str(root / "var"),
            KILN_INPUT_ROOTS=str(media),
            KILN_HTTP_PORT=str(self.http_port),
            KILN_GRPC_PORT=str(self.grpc_port),
            KILN_WORKER_PORT=str(free_port()),
            KILN_LOG_LEVEL="WARNING",
        )
        root.mkdir(parents=True, exist_ok=True)
        self.log = (root / "kiln.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kiln_cli", "up", "--workers", "1"],
            cwd=root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("kiln did not start") from None
            time.sleep(0.2)
        key_file = root / "var" / "dev_api_key"
        while not key_file.exists():
            time.sleep(0.1)
        self.auth = (("authorization", f"Bearer {key_file.read_text().strip()}"),)
        self.stub = job_service_pb2_grpc.JobServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        )

    def run_ladder(self, source: Path) -> float:
        start = time.perf_counter()
        job = self.stub.Create(
            job_service_pb2.CreateRequest(input_url=f"file://{source}", outputs=[ladder_spec()]),
            metadata=self.auth,
        ).job
        for event in self.stub.Watch(
            job_service_pb2.WatchRequest(id=job.id), metadata=self.auth, timeout=3600
        ):
            if event.HasField("completed"):
                elapsed = time.perf_counter() - start
                if event.completed.job.status != job_pb2.JOB_STATUS_COMPLETED:
                    raise RuntimeError(f"kiln job ended {event.completed.job}")
                return elapsed
        raise RuntimeError("stream closed without completed")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()

    source = make_source(args.seconds)
    info = asyncio.run(probe(str(source)))
    results: dict[str, list[float]] = {"kiln": [], "raw": [], "three": []}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        root = Path(tmp)
        kiln = Kiln(root / "kiln", source.parent)
        try:

            def run_kiln() -> float:
                return kiln.run_ladder(source)

            def run_raw() -> float:
                out = root / "raw"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                return timed(raw_argv(source, info, out))

            def run_three() -> float:
                total = 0.0
                for rung in RUNGS:
                    out = root / f"single_{rung}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    total += timed(raw_argv(source, info, out, (rung,)))
                return total

            print("raw command:", " ".join(raw_argv(source, info, root / "raw")), flush=True)
            order = [("kiln", run_kiln), ("raw", run_raw), ("three", run_three)]
            for round_index in range(args.rounds):
                rotated = order[round_index % 3 :] + order[: round_index % 3]
                for name, run in rotated:
                    seconds = run()
                    results[name].append(seconds)
                    print(f"round {round_index + 1} {name:5s} {seconds:7.2f} s", flush=True)
        finally:
            kiln.stop()

    medians = {name: statistics.median(values) for name, values in results.items()}
    kiln_raw = medians["kiln"] / medians["raw"]
    three_kiln = medians["three"] / medians["kiln"]
    print(
        f"median kiln {medians['kiln']:.2f} s, raw {medians['raw']:.2f} s, "
        f"three {medians['three']:.2f} s"
    )
    print(f"kiln/raw = {kiln_raw:.2f}")
    print(f"three-process/kiln = {three_kiln:.2f}")
    record(args, medians, results, kiln_raw, three_kiln)


def record(args, medians, results, kiln_raw, three_kiln) -> None:
    ffmpeg_version = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    lines = [
        "",
        f"## ladder — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, {ffmpeg_version}.",
        f"Source {args.seconds} s 1080p30 (~16 Mb/s, 2 s GOP, noise); HLS fMP4 ladder "
        "1080p/720p/480p, x264 veryfast, 6 s segments; "
        f"{args.rounds} interleaved rounds.",
        "",
        "| run | median wall (s) | all runs (s) |",
        "|---|---|---|",
    ]
    for name, label in (
        ("kiln", "(a) kiln, Create → completed"),
        ("raw", "(b) raw FFmpeg, one process"),
        ("three", "(c) three FFmpeg processes"),
    ):
        runs = ", ".join(f"{v:.2f}" for v in results[name])
        lines.append(f"| {label} | {medians[name]:.2f} | {runs} |")
    lines += ["", f"kiln/raw = {kiln_raw:.2f}", "", f"three-process/kiln = {three_kiln:.2f}", ""]
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\n"
            "Newest last. Medians of interleaved runs on a shared, noisy machine.\n"
        )
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
