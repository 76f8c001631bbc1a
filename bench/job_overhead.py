"""Benchmark: what kiln adds to a thumbnail job (Xora's quickstart: one JPG at 1 s of a 4 s clip).

Per database (SQLite, PostgreSQL): `kiln up` as one process (server and embedded worker
pool, as a self-hoster runs it). A run is Create → the `completed` event on a Watch opened
right after Create, from the client's clock. The raw side, interleaved run by run: the
commands a careful script would run for the same result, `ffprobe` of the input, then
`ffmpeg -ss 1 -i in.mp4 -frames:v 1 out.jpg`. Overhead = kiln's p50 minus raw's p50 (and the
median of per-pair differences). Targets: ≤ 100 ms on SQLite, ≤ 150 ms on PostgreSQL.

Run: .venv/bin/python bench/job_overhead.py [--runs 20] [--databases sqlite,pg] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import signal
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

from bench.cp_support import free_port, machine_line, print_and_record  # noqa: E402
from bench.fleet_support import create_database, drop_database  # noqa: E402

TARGET_MS = {"sqlite": 100.0, "pg": 150.0}
PROBE = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
THUMBNAIL = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-ss", "1"]


def start_up(root: Path, database: str) -> tuple[subprocess.Popen, str, str, Path]:
    http_port, grpc_port, worker_port = free_port(), free_port(), free_port()
    data = root / "var"
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}",
        "KILN_DATA_DIR": str(data),
        "KILN_DATABASE_URL": database,
        "KILN_HTTP_PORT": str(http_port),
        "KILN_GRPC_PORT": str(grpc_port),
        "KILN_WORKER_PORT": str(worker_port),
        "KILN_INPUT_ROOTS": str(root / "inputs"),
        "KILN_LOG_LEVEL": "WARNING",
        "KILN_SCRATCH_DIR": str(root / "scratch"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln_cli", "up"],
        env=env,
        cwd=root,
        stdout=(root / "up.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            healthy = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).is_success
        except httpx.HTTPError:
            healthy = False
        if healthy and (data / "dev_api_key").exists():
            break
        time.sleep(0.1)
    else:
        raise RuntimeError((root / "up.log").read_text())
    sample = root / "inputs" / "sample.mp4"  # the clip `kiln up` makes: 4 s, 1280x720
    return process, f"127.0.0.1:{grpc_port}", (data / "dev_api_key").read_text().strip(), sample


def kiln_run(stub, key: str, sample: Path) -> float:
    auth = (("authorization", f"Bearer {key}"),)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{sample}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_JPG, thumbnail=job_pb2.ThumbnailSpec(time_seconds=1.0)
            )
        ],
    )
    started = time.perf_counter()
    job = stub.Create(request, metadata=auth).job
    for event in stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60):
        if event.WhichOneof("event") == "completed":
            elapsed = time.perf_counter() - started
            if event.completed.job.status != job_pb2.JOB_STATUS_COMPLETED:
                raise RuntimeError(f"job ended {event.completed.job.status}")
            return elapsed
    raise RuntimeError("stream ended without a completed event")


def raw_run(sample: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [*PROBE, str(sample)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*THUMBNAIL, "-i", str(sample), "-frames:v", "1", str(out)],
        check=True,
    )
    return time.perf_counter() - started


def bench(name: str, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="kiln-overhead-") as tmp:
        root = Path(tmp)
        database = create_database("kiln_overhead") if name == "pg" else ""
        process = None
        try:
            process, target, key, sample = start_up(root, database)
            stub = job_service_pb2_grpc.JobServiceStub(grpc.insecure_channel(target))
            kiln_run(stub, key, sample)  # warm: first claim, imports
            raw_run(sample, root / "raw.jpg")
            kiln, raw = [], []
            for _ in range(runs):
                kiln.append(kiln_run(stub, key, sample))
                raw.append(raw_run(sample, root / "raw.jpg"))
            return {"kiln": kiln, "raw": raw}
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            if database:
                drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--databases", default="sqlite,pg")
    parser.add_argument("--label", default="")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    results = {name: bench(name, args.runs) for name in args.databases.split(",")}
    lines = [
        "",
        f"## job_overhead{(' — ' + args.label) if args.label else ''} — "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        machine_line()
        + f" `kiln up` (server + embedded worker, one process); {args.runs} interleaved runs; "
        "thumbnail JPG at 1 s of the 4 s 1280x720 sample. Raw: `ffprobe -print_format json "
        "-show_format -show_streams in.mp4` then `ffmpeg -ss 1 -i in.mp4 -frames:v 1 out.jpg`.",
        "",
        "| database | raw p50 (ms) | kiln p50 (ms) | overhead p50 (ms) | median pairwise overhead "
        "(ms) | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        kiln_p50 = statistics.median(result["kiln"]) * 1000
        raw_p50 = statistics.median(result["raw"]) * 1000
        pairwise = (
            statistics.median(k - r for k, r in zip(result["kiln"], result["raw"], strict=True))
            * 1000
        )
        overhead = kiln_p50 - raw_p50
        lines.append(
            f"| {name} | {raw_p50:.0f} | {kiln_p50:.0f} | {overhead:.0f} | {pairwise:.0f} | "
            f"≤ {TARGET_MS[name]:.0f}: {'met' if overhead <= TARGET_MS[name] else 'missed'} |"
        )
    lines.append("")
    print_and_record(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
