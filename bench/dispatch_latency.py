"""Benchmark: dispatch latency, from Create to an idle worker starting the job's probe.

Per backend, one server and one idle worker (concurrency 1) run as real processes. The
client sends N Creates one after another (each job runs to its end before the next, with a
short pause so the worker is back in its wait); a job's latency is the worker's log line
`task … (TASK_KIND_PROBE) for job X` (asctime, millisecond resolution, truncated) minus the
client's wall clock just before Create was sent. Client, server, worker, PostgreSQL and
Google's Pub/Sub emulator share this machine's cores.

Backends: `db-pg` (KILN_DISPATCH=db on PostgreSQL: the Create commits and wakes the worker's
long-polling ClaimTask in the same server), `db-pg-replica` (Create on one replica, the worker
on another: the wake-up goes through NOTIFY/LISTEN), `pubsub-pg` (outbox → Publish → the
worker's waiting Pull → ClaimTask by id, through Google's Pub/Sub emulator), `db-sqlite`.

Baselines measured in the same run: a raw PostgreSQL NOTIFY → LISTEN round trip with psycopg
(for db), and a raw Publish → Pull round trip through the same emulator with the
google-cloud-pubsub GAPIC clients kiln uses, a Pull already waiting when the Publish goes out
(for pubsub). Targets: p50 ≤ 50 ms on db, ≤ 100 ms on pubsub.

Run: .venv/bin/python bench/dispatch_latency.py [--jobs 50] [--backends db-pg,pubsub-pg,...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import psycopg  # noqa: E402
from google.pubsub_v1 import types  # noqa: E402
from kiln.v1 import job_pb2, job_service_pb2  # noqa: E402

from bench.fleet_support import create_database, drop_database  # noqa: E402
from common.pubsub import PubSubSettings, publisher_client, subscriber_client  # noqa: E402
from tests.e2e.cluster import Cluster  # noqa: E402
from tests.support.pubsub_emulator import PubSubEmulator  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
BACKENDS = ("db-pg", "db-pg-replica", "pubsub-pg", "db-sqlite")
TARGET_MS = {"db": 50.0, "pubsub": 100.0}
PROBE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+: task \S+ \(TASK_KIND_PROBE\) "
    r"for job (\S+)"
)
# Pause after a job ends before the next Create: the worker reports, then waits again.
PAUSE_SECONDS = 0.5


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 (nearest rank) and max, in milliseconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def make_clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    command += ["-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    subprocess.run([*command, "-c:a", "aac", str(path)], check=True)
    return path


# -- kiln -----------------------------------------------------------------------------------


def log_time(stamp: str) -> float:
    """The logging module's asctime (local time, milliseconds) as epoch seconds."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def measure_kiln(
    backend: str, jobs: int, root: Path, clip: Path, emulator_host: str
) -> list[float]:
    database = (
        f"sqlite:///{root / 'kiln.db'}" if backend == "db-sqlite" else create_database("kiln_bench")
    )
    settings = {
        "KILN_LOG_LEVEL": "INFO",
        "KILN_DISPATCH": "pubsub" if backend.startswith("pubsub") else "db",
        "KILN_LEASE_SECONDS": "30",
    }
    if backend.startswith("pubsub"):
        settings |= {
            "PUBSUB_EMULATOR_HOST": emulator_host,
            "KILN_PUBSUB_PROJECT": "kiln-bench",
            "KILN_PUBSUB_PREFIX": f"b{uuid.uuid4().hex[:8]}",
        }
    cluster = Cluster(database, root / backend, clip.parent, settings=settings)
    cluster.root.mkdir(parents=True)
    try:
        front = cluster.start_server()
        back = cluster.start_server() if backend == "db-pg-replica" else front
        worker = cluster.start_worker(back, concurrency=1)
        auth = (("authorization", f"Bearer {cluster.create_key('org_bench')}"),)
        stub = front.job_stub()
        request = job_service_pb2.CreateRequest(
            input_url=f"file://{clip}",
            outputs=[
                job_pb2.OutputSpec(
                    type=job_pb2.OUTPUT_TYPE_MP4,
                    video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
                )
            ],
        )
        sent: dict[str, float] = {}
        # One warm-up job first (connections, imports, topology): not counted.
        for n in range(jobs + 1):
            time.sleep(PAUSE_SECONDS)
            before = time.time()
            job = stub.Create(request, metadata=auth, timeout=30).job
            if n:
                sent[job.id] = before
            last = None
            for event in stub.Watch(
                job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=120
            ):
                last = event
            if last is None or not last.HasField("completed"):
                raise RuntimeError(f"job {job.id} did not complete: {last}")
            status = last.completed.job.status
            if status != job_pb2.JOB_STATUS_COMPLETED:
                raise RuntimeError(f"job {job.id} ended {job_pb2.JobStatus.Name(status)}")
        worker_log = cluster.root / "worker-0.log"
        started: dict[str, float] = {}
        for line in worker_log.read_text().splitlines():
            if match := PROBE_LINE.match(line):
                started.setdefault(match.group(2), log_time(match.group(1)))
        missing = [job_id for job_id in sent if job_id not in started]
        if missing:
            raise RuntimeError(f"no probe start logged for {len(missing)} jobs, e.g. {missing[0]}")
        assert worker.poll() is None, "the worker exited"
        return [started[job_id] - at for job_id, at in sent.items()]
    except Exception:
        print(cluster.logs(), flush=True)
        raise
    finally:
        cluster.stop()
        if not database.startswith("sqlite"):
            drop_database(database)


# -- raw baselines --------------------------------------------------------------------------


async def raw_notify(rounds: int) -> list[float]:
    """NOTIFY on one connection → the LISTENing connection's notifies() receives it."""
    database = create_database("kiln_bench")
    try:
        listener = await psycopg.AsyncConnection.connect(database, autocommit=True)
        sender = await psycopg.AsyncConnection.connect(database, autocommit=True)
        async with listener, sender:
            await listener.execute("LISTEN bench_tasks")
            received: asyncio.Queue[float] = asyncio.Queue()

            async def listen() -> None:
                async for _ in listener.notifies():
                    received.put_nowait(time.perf_counter())

            listening = asyncio.create_task(listen())
            values = []
            for n in range(rounds + 1):
                await asyncio.sleep(0.05)
                before = time.perf_counter()
                await sender.execute("SELECT pg_notify('bench_tasks', %s)", (str(n),))
                arrived = await asyncio.wait_for(received.get(), 10)
                if n:  # the first is a warm-up
                    values.append(arrived - before)
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            return values
    finally:
        drop_database(database)


async def raw_pubsub(rounds: int, emulator_host: str) -> list[float]:
    """Publish → a Pull that was already waiting on the subscription returns it (then ack)."""
    settings = PubSubSettings(
        project="kiln-bench", prefix=f"raw{uuid.uuid4().hex[:8]}", emulator_host=emulator_host
    )
    publisher, subscriber = publisher_client(settings), subscriber_client(settings)
    topic, subscription = settings.topic(2), settings.subscription(2)
    await publisher.create_topic(name=topic)
    await subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
    values = []
    try:
        for n in range(rounds + 1):
            pull = asyncio.create_task(
                subscriber.pull(
                    subscription=subscription,
                    max_messages=1,
                    return_immediately=False,
                    timeout=15,
                )
            )
            await asyncio.sleep(0.05)  # the Pull is open and waiting at the emulator
            before = time.perf_counter()
            await publisher.publish(
                topic=topic, messages=[types.PubsubMessage(data=str(n).encode())], timeout=30
            )
            response = await pull
            arrived = time.perf_counter()
            if not response.received_messages:
                raise RuntimeError("the waiting pull came back empty")
            await subscriber.acknowledge(
                subscription=subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
            if n:
                values.append(arrived - before)
    finally:
        for client in (publisher, subscriber):
            await client.transport.close()
    return values


# -- report ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50, help="measured jobs per backend")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    backends = [name for name in args.backends.split(",") if name]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")

    rows: list[tuple[str, str, tuple[float, float, float], int]] = []
    emulator = PubSubEmulator()
    emulator.start()
    try:
        with tempfile.TemporaryDirectory(prefix="kiln-dispatch-") as tmp:
            root = Path(tmp)
            clip = make_clip(root / "media" / "clip.mp4")
            raw = asyncio.run(raw_notify(args.jobs))
            rows.append(("raw", "PostgreSQL NOTIFY → LISTEN (psycopg)", percentiles(raw), len(raw)))
            report(rows[-1])
            raw = asyncio.run(raw_pubsub(args.jobs, emulator.host))
            row = ("raw", "Pub/Sub emulator Publish → waiting Pull", percentiles(raw), len(raw))
            rows.append(row)
            report(rows[-1])
            for backend in backends:
                values = measure_kiln(backend, args.jobs, root, clip, emulator.host)
                rows.append(("kiln", backend, percentiles(values), len(values)))
                report(rows[-1])
    finally:
        emulator.stop()
    if not args.no_record:
        record(args, rows)


def target_for(name: str) -> float | None:
    if name.startswith("pubsub"):
        return TARGET_MS["pubsub"]
    if name.startswith("db"):
        return TARGET_MS["db"]
    return None


def verdict(name: str, p50: float) -> str:
    target = target_for(name)
    if target is None:
        return "—"
    return f"p50 ≤ {target:g} ms: {'met' if p50 <= target else 'MISSED'}"


def report(row: tuple[str, str, tuple[float, float, float], int]) -> None:
    kind, name, (p50, p99, worst), count = row
    print(
        f"{kind:4s} {name:40s} n={count:3d} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
        f"max {worst:7.1f} ms  {verdict(name, p50)}",
        flush=True,
    )


def record(args, rows) -> None:
    load = os.getloadavg()
    lines = [
        "",
        f"## dispatch_latency — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, load average at the end {load[0]:.2f} / {load[1]:.2f}. "
        f"{args.jobs} sequential jobs per backend (1 s 160x120 clip → 240p MP4; one warm-up job "
        f"not counted; {PAUSE_SECONDS:g} s pause between jobs), one server and one idle worker "
        "(concurrency 1) as processes; latency = the worker's `task … (TASK_KIND_PROBE)` log "
        "time minus the client's clock before Create. Raw baselines: the same number of rounds.",
        "",
        "| path | n | p50 (ms) | p99 (ms) | max (ms) | target |",
        "|---|---|---|---|---|---|",
    ]
    for kind, name, (p50, p99, worst), count in rows:
        label = f"kiln {name}" if kind == "kiln" else f"raw: {name}"
        lines.append(
            f"| {label} | {count} | {p50:.1f} | {p99:.1f} | {worst:.1f} | {verdict(name, p50)} |"
        )
    lines.append("")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
