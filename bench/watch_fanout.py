"""Benchmark: Watch fan-out, N gRPC watchers of one job on one server process.

The benchmark plays the worker of one job and reports progress K times; watchers run in
several client processes (`--clients`), at most 100 streams per HTTP/2 connection. For every
report it measures, per stream, the time from the report's return to the stream receiving
that progress value (CLOCK_MONOTONIC is shared by the processes): p50/p99/max over all
deliveries. It also reports the server's CPU while reports go out and its resident memory
per open stream (RSS with the streams open minus RSS before, over N).

Floor, same run, same client processes: a bare grpc.aio server broadcasting the same two
kiln WatchResponse messages per report (the output's event, then the progress event).
Client processes share the machine's cores with the server, so latencies are pessimistic.

Run: .venv/bin/python bench/watch_fanout.py [--streams 10000] [--clients 8] [--reports 20]
     [--interval 0.5] [--database sqlite|pg] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
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
from kiln.worker.v1 import worker_service_pb2 as wpb  # noqa: E402
from kiln.worker.v1 import worker_service_pb2_grpc  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
RAW_SERVICE = "bench.Fanout"
STREAMS_PER_CONNECTION = 100
TARGET_P99_MS = 200.0
# grpc core cancels calls that arrived but that the application has not yet asked for
# beyond 1,000 (at random) and 3,000 (always); 10,000 watchers opening at once exceed both.
# kiln's public server raises them the same way (server/app.py).
PENDING_CALL_LIMITS = [
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the raw baseline: a bare grpc.aio broadcaster ------------------------------------------


async def serve_raw(port: int) -> None:
    """Streams every broadcast message to every open stream; Trigger broadcasts one."""
    queues: set[asyncio.Queue] = set()

    async def watch(request: bytes, context):
        queue: asyncio.Queue = asyncio.Queue()
        queues.add(queue)
        try:
            # A first message at once, as kiln's snapshot: the watcher knows it is open.
            yield job_service_pb2.WatchResponse(heartbeat=job_service_pb2.HeartbeatEvent())
            while True:
                message = await queue.get()
                if message is None:
                    return
                yield message
        finally:
            queues.discard(queue)

    async def trigger(request: bytes, context) -> bytes:
        event = job_service_pb2.WatchResponse.FromString(request)
        for queue in queues:
            queue.put_nowait(event)
        return b""

    async def count(request: bytes, context) -> bytes:
        return str(len(queues)).encode()

    handler = grpc.method_handlers_generic_handler(
        RAW_SERVICE,
        {
            "Watch": grpc.unary_stream_rpc_method_handler(
                watch, response_serializer=job_service_pb2.WatchResponse.SerializeToString
            ),
            "Trigger": grpc.unary_unary_rpc_method_handler(trigger),
            "Count": grpc.unary_unary_rpc_method_handler(count),
        },
    )
    server = grpc.aio.server(options=PENDING_CALL_LIMITS)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# -- watchers, in client processes -----------------------------------------------------------


async def watch_streams(args) -> None:
    """Open `args.streams` streams, say "ready" once each had its first message, record
    when each progress value arrived; on stdin's end print the arrivals as JSON."""
    arrivals: dict[str, list[float]] = {}
    opened = 0
    all_open = asyncio.Event()
    # A local subchannel pool each: otherwise grpc shares one connection among channels
    # to the same target, and every stream of the process lands on one HTTP/2 connection.
    channels = [
        grpc.aio.insecure_channel(args.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(math.ceil(args.streams / STREAMS_PER_CONNECTION))
    ]

    def call(index: int):
        channel = channels[index // STREAMS_PER_CONNECTION]
        if args.job:
            return job_service_pb2_grpc.JobServiceStub(channel).Watch(
                job_service_pb2.WatchRequest(id=args.job),
                metadata=(("authorization", f"Bearer {args.key}"),),
            )
        return channel.unary_stream(
            f"/{RAW_SERVICE}/Watch",
            response_deserializer=job_service_pb2.WatchResponse.FromString,
        )(b"")

    failures: list[str] = []

    async def consume(index: int) -> None:
        try:
            await receive(index)
        except grpc.aio.AioRpcError as error:
            failures.append(f"{error.code().name}: {error.details()}")
            if len(failures) == 1:
                print(f"stream {index} failed: {failures[0]}", file=sys.stderr, flush=True)
            if opened + len(failures) == args.streams:
                all_open.set()

    async def receive(index: int) -> None:
        nonlocal opened
        first = True
        async for event in call(index):
            if first:
                first = False
                opened += 1
                if opened + len(failures) == args.streams:
                    all_open.set()
            if event.WhichOneof("event") == "progress" and event.progress.progress > 0:
                arrivals.setdefault(f"{event.progress.progress:.3f}", []).append(time.monotonic())

    tasks = []
    for index in range(args.streams):
        tasks.append(asyncio.create_task(consume(index)))
        if index % 200 == 199:
            await asyncio.sleep(0.05)  # let the server keep up with the opening
    await asyncio.wait_for(all_open.wait(), 600)
    # Streams that ended before their first message are reported, not waited for.
    print(f"ready {len(failures)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    print(json.dumps(arrivals), flush=True)


class Watchers:
    """`clients` processes holding `streams` streams between them."""

    def __init__(self, target: str, streams: int, clients: int, job: str = "", key: str = ""):
        self.processes = []
        for index in range(clients):
            share = streams // clients + (index < streams % clients)
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--watch", target, "--streams", str(share)]
                    + (["--job", job, "--key", key] if job else []),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"},
                )
            )

    def wait_ready(self) -> int:
        """Waits until every stream opened or failed; returns how many failed."""
        failed = 0
        for process in self.processes:
            assert process.stdout is not None  # opened with stdout=PIPE
            line = process.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"watcher process failed to open its streams: {line!r}")
            failed += int(line[1])
        return failed

    def arrivals(self) -> dict[str, list[float]]:
        merged: dict[str, list[float]] = {}
        for process in self.processes:
            out, _ = process.communicate("", timeout=120)
            for value, times in json.loads(out.strip().splitlines()[-1]).items():
                merged.setdefault(value, []).extend(times)
        return merged


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def latencies(sent: dict[str, float], arrivals: dict[str, list[float]], streams: int):
    values: list[float] = []
    missing = 0
    for value, at in sent.items():
        arrived = arrivals.get(value, [])
        missing += streams - len(arrived)
        # A report returns after the commit; a delivery can beat the return by a hair.
        values += [max(t - at, 0.0) for t in arrived]
    return values, missing


def wait_healthy(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not healthy")


async def play_reports(report, reports: int, interval: float) -> dict[str, float]:
    sent: dict[str, float] = {}
    for n in range(1, reports + 1):
        value = round(n * 90 / reports, 3)
        await report(n, value)
        sent[f"{value:.3f}"] = time.monotonic()
        await asyncio.sleep(interval)
    await asyncio.sleep(3)
    return sent


def measure_kiln(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="kiln-fanout-") as tmp:
        root = Path(tmp)
        http_port, grpc_port, worker_port = free_port(), free_port(), free_port()
        database = ""
        if args.database == "pg":
            from bench.fleet_support import create_database

            database = create_database("kiln_fanout")
        env = dict(os.environ)
        env.update(
            PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'gen'}",
            KILN_DATA_DIR=str(root / "var"),
            KILN_DATABASE_URL=database,
            KILN_HTTP_PORT=str(http_port),
            KILN_GRPC_PORT=str(grpc_port),
            KILN_WORKER_PORT=str(worker_port),
            KILN_LOG_LEVEL="WARNING",
            KILN_INPUT_ROOTS=str(root),
            # Every report is an event here: this measures fan-out, not the progress cap.
            KILN_PROGRESS_EVENTS_PER_SECOND="0",
            # The benchmark holds the task's lease without heartbeats while 10,000 streams
            # open (tens of seconds); a 30 s lease would lapse and the reports be refused.
            KILN_LEASE_SECONDS="900",
        )
        (root / "in.mp4").write_bytes(b"not probed: the benchmark plays the worker")
        key = (
            subprocess.run(
                [sys.executable, "-m", "kiln_cli", "create-key", "--org", "org_bench"],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "kiln_cli", "serve"],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{http_port}")
            job, task = asyncio.run(start_job(root, grpc_port, worker_port, key))
            return observe(
                server.pid,
                f"127.0.0.1:{grpc_port}",
                args,
                lambda: asyncio.run(report_kiln(worker_port, task, args)),
                job=job,
                key=key,
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            if database:
                from bench.fleet_support import drop_database

                drop_database(database)


async def start_job(root: Path, grpc_port: int, worker_port: int, key: str):
    auth = (("authorization", f"Bearer {key}"),)
    jobs = job_service_pb2_grpc.JobServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}"))
    worker = worker_service_pb2_grpc.WorkerServiceStub(
        grpc.aio.insecure_channel(f"127.0.0.1:{worker_port}")
    )
    job = (
        await jobs.Create(
            job_service_pb2.CreateRequest(
                input_url=f"file://{root / 'in.mp4'}",
                outputs=[
                    job_pb2.OutputSpec(
                        type=job_pb2.OUTPUT_TYPE_MP4,
                        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)],
                    )
                ],
            ),
            metadata=auth,
        )
    ).job
    probe = (await worker.ClaimTask(wpb.ClaimTaskRequest(worker_id="bench", wait_seconds=5))).task
    info = job_pb2.InputInfo(
        duration_seconds=60,
        streams=[
            job_pb2.StreamInfo(kind="video", codec="h264", width=1280, height=720, frame_rate=30)
        ],
    )
    await worker.CompleteTask(
        wpb.CompleteTaskRequest(task_id=probe.id, lease_token=probe.lease_token, input_info=info)
    )
    task = (await worker.ClaimTask(wpb.ClaimTaskRequest(worker_id="bench", wait_seconds=5))).task
    return job.id, task


async def report_kiln(worker_port: int, task, args) -> dict[str, float]:
    worker = worker_service_pb2_grpc.WorkerServiceStub(
        grpc.aio.insecure_channel(f"127.0.0.1:{worker_port}")
    )

    async def report(_n: int, value: float) -> None:
        await worker.ReportProgress(
            wpb.ReportProgressRequest(task_id=task.id, lease_token=task.lease_token, progress=value)
        )

    return await play_reports(report, args.reports, args.interval)


def observe(pid: int, target: str, args, run_reports, job: str = "", key: str = "") -> dict:
    """Open the watchers, run the reports, gather latencies, CPU and memory."""
    rss_before = process_rss_bytes(pid)
    opening = time.monotonic()
    watchers = Watchers(target, args.streams, args.clients, job, key)
    failed = watchers.wait_ready()
    open_seconds = time.monotonic() - opening
    time.sleep(1)
    rss_open = process_rss_bytes(pid)
    cpu_before, wall_before = process_cpu_seconds(pid), time.monotonic()
    sent = run_reports()
    cpu = (process_cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    values, missing = latencies(sent, watchers.arrivals(), args.streams - failed)
    ordered = sorted(values) or [float("nan")]  # nothing delivered: reported as nan
    return {
        "deliveries": len(values),
        "failed_streams": failed,
        "missing": missing,
        "p50": statistics.median(ordered) * 1000 if values else float("nan"),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max": ordered[-1] * 1000,
        "cpu": cpu * 100,
        "rss_per_stream": (rss_open - rss_before) / args.streams,
        "open_seconds": open_seconds,
    }


def measure_raw(args) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-raw", str(port)])
    try:
        time.sleep(1.0)

        async def reports() -> dict[str, float]:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            trigger = channel.unary_unary(f"/{RAW_SERVICE}/Trigger")

            async def report(n: int, value: float) -> None:
                # The same two events kiln logs per report: the output's, then the progress.
                await trigger(output_event(2 * n - 1, value).SerializeToString())
                event = job_service_pb2.WatchResponse(
                    sequence=2 * n, progress=job_service_pb2.ProgressEvent(progress=value)
                )
                await trigger(event.SerializeToString())

            return await play_reports(report, args.reports, args.interval)

        return observe(server.pid, f"127.0.0.1:{port}", args, lambda: asyncio.run(reports()))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def output_event(sequence: int, value: float) -> job_service_pb2.WatchResponse:
    """An output event shaped like kiln's: the output with its spec and progress."""
    return job_service_pb2.WatchResponse(
        sequence=sequence,
        output=job_service_pb2.OutputEvent(
            output=job_pb2.Output(
                id="out_01jbenchmarkbenchmarkbenchma",
                spec=job_pb2.OutputSpec(
                    type=job_pb2.OUTPUT_TYPE_MP4,
                    video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)],
                ),
                status=job_pb2.OUTPUT_STATUS_PROCESSING,
                progress=value,
                estimated_cost=job_pb2.Money(micros=9000, currency="USD"),
            )
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=10_000)
    # ≤ 1,250 streams per client process: here a grpc.aio client process with ~1,800 open
    # streams saw them CANCELLED (the floor's too), which is what stopped the old bench at 2,000.
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "pg"))
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--serve-raw", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--watch", default="", help=argparse.SUPPRESS)
    parser.add_argument("--job", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_raw:
        asyncio.run(serve_raw(args.serve_raw))
        return
    if args.watch:
        args.target = args.watch
        asyncio.run(watch_streams(args))
        return
    results = {}
    for name, measure in (("raw", measure_raw), ("kiln", measure_kiln)):
        results[name] = measure(args)
        r = results[name]
        print(
            f"{name:5s} {r['failed_streams']} streams failed to open; {r['deliveries']} "
            f"deliveries ({r['missing']} missing): p50 "
            f"{r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms; server CPU "
            f"{r['cpu']:.0f} %, {r['rss_per_stream'] / 1024:.1f} KiB per stream; opened in "
            f"{r['open_seconds']:.1f} s",
            flush=True,
        )
    lines = report(args, results)
    print("\n".join(lines))
    if not args.no_record:
        with RESULTS.open("a") as handle:
            handle.write("\n".join(lines))


def report(args, results) -> list[str]:
    load = os.getloadavg()
    kiln, raw = results["kiln"], results["raw"]
    lines = [
        "",
        f"## watch_fanout — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average at the end {load[0]:.2f} / {load[1]:.2f}. {args.streams} gRPC Watch "
        f"streams on one job from {args.clients} client processes ({STREAMS_PER_CONNECTION} "
        f"streams per HTTP/2 connection), {args.reports} progress reports {args.interval:g} s "
        f"apart; kiln on {args.database}. Latency from the report's return to each stream's "
        "receipt. Clients share the cores with the server.",
        "",
        "| server | streams failed to open | deliveries (missing) | p50 (ms) | p99 (ms) | max (ms) "
        "| server CPU | RSS per stream | streams opened in |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in (("kiln", kiln), ("floor: raw grpc.aio broadcast", raw)):
        lines.append(
            f"| {label} | {r['failed_streams']} | {r['deliveries']} ({r['missing']}) | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['max']:.1f} | {r['cpu']:.0f} % | {r['rss_per_stream'] / 1024:.1f} KiB | "
            f"{r['open_seconds']:.1f} s |"
        )
    met = (
        "met"
        if kiln["p99"] <= TARGET_P99_MS and not kiln["missing"] and not kiln["failed_streams"]
        else "missed"
    )
    lines += ["", f"Target: p99 ≤ {TARGET_P99_MS:.0f} ms with every delivery made: {met}.", ""]
    return lines


if __name__ == "__main__":
    main()
