"""Benchmark: chunked parallel encoding of an HLS ladder, 1 worker against 2, and single pass.

Source: 120 s of 1080p30 synthetic video (testsrc2 with noise, 2 s GOP) and a tone. Output: HLS
1080p / 720p / 480p H.264 (STANDARD: x264 veryfast), 6 s segments, MPEG-TS.

Measured (Create -> Watch `completed`, server and workers as real processes, SQLite, local
storage, KILN_CHUNK_THRESHOLD_SECONDS=30, KILN_CHUNK_SECONDS=30 by default):
  (a) single pass: kiln's own one-process command for the same output, pinned to one core with
      taskset (the reference);
  (b) chunked, W=1: one worker (concurrency 1) pinned to core 0;
  (c) chunked, W=2: two workers (concurrency 1), pinned to cores 0 and 1.
Also the time to the first playable segment (a Get lists master.m3u8) against the total.
Prints `chunked … speedup X.XX` (b/c) and the W=1 cost of chunking (b/a).

Run: .venv/bin/python bench/chunked.py [--seconds 120] [--chunk-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from kiln.v1 import job_pb2, job_service_pb2  # noqa: E402

from tests.e2e.cluster import Cluster, kiln_command  # noqa: E402
from worker.media.commands import build_command  # noqa: E402
from worker.media.probe import probe  # noqa: E402

H264 = job_pb2.VIDEO_CODEC_H264


def ladder() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[job_pb2.VideoVariant(codec=H264, resolution=r) for r in ("1080p", "720p", "480p")],
        segments=job_pb2.SegmentSpec(duration_seconds=6),
    )


def make_source(path: Path, seconds: int) -> None:
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"),
            "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t",
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)),
            *("-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-b:v", "16M"),
            *("-pix_fmt", "yuv420p", "-c:a", "aac", str(path)),
        ],
        check=True,
    )


def single_pass(source: Path, out_dir: Path) -> float:
    out_dir.mkdir(parents=True, exist_ok=True)
    info = asyncio.run(probe(str(source)))
    plan = build_command(input_path=str(source), spec=ladder(), info=info, out_dir=out_dir)
    started = time.monotonic()
    subprocess.run(["taskset", "-c", "0", *plan.argv], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def chunked(
    source: Path, root: Path, cores: list[int], chunk_seconds: float
) -> tuple[float, float]:
    """(total seconds, seconds to the first playable segment) with one worker per core."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        f"sqlite:///{root / 'kiln.db'}",
        root,
        source.parent,
        settings={
            "KILN_CHUNK_THRESHOLD_SECONDS": "30",
            "KILN_CHUNK_SECONDS": str(chunk_seconds),
            "KILN_LEASE_SECONDS": "30",
        },
    )
    try:
        server = cluster.start_server()
        for core in cores:
            log = root / f"worker-{core}.log"
            cluster.workers.append(
                subprocess.Popen(
                    ["taskset", "-c", str(core), *kiln_command("worker")],
                    env=cluster.env(
                        KILN_SERVER_ADDRESS=server.worker_target,
                        KILN_WORKER_CONCURRENCY="1",
                        KILN_SCRATCH_DIR=str(root / f"scratch-{core}"),
                    ),
                    cwd=root,
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                )
            )
        auth = (("authorization", f"Bearer {cluster.create_key('org_bench')}"),)
        stub = server.job_stub()
        started = time.monotonic()
        job = stub.Create(
            job_service_pb2.CreateRequest(input_url=f"file://{source}", outputs=[ladder()]),
            metadata=auth,
        ).job
        first_playable = 0.0
        while True:
            current = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
            if not first_playable and any(
                f.path == "master.m3u8" for f in current.outputs[0].files
            ):
                first_playable = time.monotonic() - started
            if current.status in (
                job_pb2.JOB_STATUS_COMPLETED,
                job_pb2.JOB_STATUS_FAILED,
                job_pb2.JOB_STATUS_PARTIAL,
                job_pb2.JOB_STATUS_CANCELED,
            ):
                break
            time.sleep(0.2)
        total = time.monotonic() - started
        if current.status != job_pb2.JOB_STATUS_COMPLETED:
            raise RuntimeError(f"job ended {current.status}: {current.error}")
        return total, first_playable
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--chunk-seconds", type=float, default=30.0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-chunked-") as folder:
        root = Path(folder)
        source = root / "media" / "source.mp4"
        source.parent.mkdir()
        make_source(source, args.seconds)
        reference = single_pass(source, root / "single")
        print(f"single pass: {reference:.1f} s", flush=True)
        one, one_first = chunked(source, root / "w1", [0], args.chunk_seconds)
        print(f"W=1: {one:.1f} s", flush=True)
        two, two_first = chunked(source, root / "w2", [0, 1], args.chunk_seconds)
    load_after = os.getloadavg()
    lines = [
        f"single pass, 1 core: {reference:.1f} s",
        f"chunked W=1 (1 core): {one:.1f} s, first playable segment after {one_first:.1f} s",
        f"chunked W=2 (2 cores): {two:.1f} s, first playable segment after {two_first:.1f} s",
        f"chunked 2 workers vs 1 worker speedup {one / two:.2f}",
        f"chunked W=1 vs single pass {one / reference:.2f}x (cost of chunking)",
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}",
    ]
    print("\n".join(lines))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node() or 'vm'}, {os.cpu_count()} cores, {platform.machine()}"
    with (REPO / "bench" / "RESULTS.md").open("a") as results:
        results.write(
            f"\n## chunked — {stamp}\n\nMachine: {machine}, Python {platform.python_version()}. "
            f"{args.seconds} s 1080p30 source, HLS 1080/720/480 x264 veryfast, 6 s TS "
            f"segments, {args.chunk_seconds:g} s chunks.\n\n"
            + "\n".join(f"- {line}" for line in lines)
            + "\n"
        )


if __name__ == "__main__":
    main()
