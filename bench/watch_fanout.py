"""Benchmark: Watch fan-out latency through kiln against a raw grpc.aio stream doing the same.

N clients watch one job over native gRPC while the benchmark plays the worker and reports
progress K times. For every report it measures, per stream, the time from the report's
return to the stream receiving that progress value; p50/p99/max over all deliveries.
The baseline is a bare grpc.aio server that broadcasts the same two kiln WatchResponse
messages per report (the output's event, then the progress event) to N streams on a unary
trigger: what the transport costs with no database, hub or event log.
Client and servers share this machine's cores, so latencies are pessimistic.

Run: .venv/bin/python bench/watch_fanout.py [--streams 500] [--reports 40]
"""

from __future__ import annotations

import argparse
import asyncio
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


# -- the raw baseline: a bare grpc.aio broadcaster ------------------------------------------


async def serve_raw(port: int) -> None:
    """Streams every broadcast message to every open stream; Trigger broadcasts one."""
    queues: set[asyncio.Queue] = set()

    async def watch(request: bytes, context):
        queue: asyncio.Queue = asyncio.Queue()
        queues.add(queue)
        try:
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
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# -- measuring ----------------------------------------------------------------------------


class Deliveries:
    """When each stream received each progress value."""

    def __init__(self) -> None:
        self.arrivals: dict[float, list[float]] = {}

    def record(self, progress: float) -> None:
        self.arrivals.setdefault(round(progress, 3), []).append(time.perf_counter())


async def consume(
    stream, deliveries: Deliveries, opened: asyncio.Event, counter: list[int]
) -> None:
    first = True
    async for event in stream:
        if first:
            first = False
            counter[0] += 1
            if counter[0] == counter[1]:
                opened.set()
        if event.WhichOneof("event") == "progress" and event.progress.progress > 0:
            deliveries.record(event.progress.progress)


async def measure_kiln(streams: int, reports: int, interval: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="kiln-fanout-") as tmp:
        root = Path(tmp)
        http_port, grpc_port, worker_port = free_port(), free_port(), free_port()
        env = dict(os.environ)
        env.update(
            PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'gen'}",
            KILN_DATA_DIR=str(root / "var"),
            KILN_HTTP_PORT=str(http_port),
            KILN_GRPC_PORT=str(grpc_port),
            KILN_WORKER_PORT=str(worker_port),
            KILN_LOG_LEVEL="WARNING",
            KILN_INPUT_ROOTS=str(root),
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
            for _ in range(300):
                try:
                    if (
                        httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).status_code
                        == 200
                    ):
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            auth = (("authorization", f"Bearer {key}"),)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
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
            probe = (
                await worker.ClaimTask(wpb.ClaimTaskRequest(worker_id="bench", wait_seconds=5))
            ).task
            info = job_pb2.InputInfo(
                duration_seconds=60,
                streams=[
                    job_pb2.StreamInfo(
                        kind="video", codec="h264", width=1280, height=720, frame_rate=30
                    )
                ],
            )
            await worker.CompleteTask(
                wpb.CompleteTaskRequest(
                    task_id=probe.id, lease_token=probe.lease_token, input_info=info
                )
            )
            task = (
                await worker.ClaimTask(wpb.ClaimTaskRequest(worker_id="bench", wait_seconds=5))
            ).task

            deliveries = Deliveries()
            opened = asyncio.Event()
            counter = [0, streams]
            # Many streams per connection, as a real client fleet behind a few proxies has.
            channels = [
                grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
                for _ in range(max(streams // 100, 1))
            ]
            watchers = [
                asyncio.create_task(
                    consume(
                        job_service_pb2_grpc.JobServiceStub(channels[i % len(channels)]).Watch(
                            job_service_pb2.WatchRequest(id=job.id), metadata=auth
                        ),
                        deliveries,
                        opened,
                        counter,
                    )
                )
                for i in range(streams)
            ]
            await asyncio.wait_for(opened.wait(), 120)
            sent: dict[float, float] = {}
            for n in range(1, reports + 1):
                value = round(n * 90 / reports, 3)
                await worker.ReportProgress(
                    wpb.ReportProgressRequest(
                        task_id=task.id, lease_token=task.lease_token, progress=value
                    )
                )
                sent[value] = time.perf_counter()
                await asyncio.sleep(interval)
            await asyncio.sleep(2)
            for watcher in watchers:
                watcher.cancel()
            return latencies(sent, deliveries, streams)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


async def measure_raw(streams: int, reports: int, interval: float) -> list[float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-raw", str(port)])
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await channel.channel_ready()
        trigger = channel.unary_unary(f"/{RAW_SERVICE}/Trigger")
        count = channel.unary_unary(f"/{RAW_SERVICE}/Count")
        deliveries = Deliveries()
        channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(max(streams // 100, 1))
        ]
        watchers = []
        for i in range(streams):
            call = channels[i % len(channels)].unary_stream(
                f"/{RAW_SERVICE}/Watch",
                response_deserializer=job_service_pb2.WatchResponse.FromString,
            )(b"")
            watchers.append(asyncio.create_task(consume_raw(call, deliveries)))
        while int(await count(b"")) < streams:
            await asyncio.sleep(0.05)
        sent: dict[float, float] = {}
        for n in range(1, reports + 1):
            value = round(n * 90 / reports, 3)
            # The same two events kiln logs per report: the output's, then the job's progress.
            await trigger(output_event(2 * n - 1, value).SerializeToString())
            event = job_service_pb2.WatchResponse(
                sequence=2 * n, progress=job_service_pb2.ProgressEvent(progress=value)
            )
            await trigger(event.SerializeToString())
            sent[value] = time.perf_counter()
            await asyncio.sleep(interval)
        await asyncio.sleep(2)
        for watcher in watchers:
            watcher.cancel()
        return latencies(sent, deliveries, streams)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


async def consume_raw(call, deliveries: Deliveries) -> None:
    async for event in call:
        if event.WhichOneof("event") == "progress":
            deliveries.record(event.progress.progress)


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


def latencies(sent: dict[float, float], deliveries: Deliveries, streams: int) -> list[float]:
    values = []
    missing = 0
    for value, at in sent.items():
        arrived = deliveries.arrivals.get(value, [])
        missing += streams - len(arrived)
        # A report returns after the commit; a delivery can beat the return by a hair.
        values += [max(t - at, 0.0) for t in arrived]
    if missing:
        print(f"  {missing} deliveries coalesced or missing", flush=True)
    return values


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--reports", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--serve-raw", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_raw:
        asyncio.run(serve_raw(args.serve_raw))
        return
    results = {}
    for name, measure in (("raw", measure_raw), ("kiln", measure_kiln)):
        values = asyncio.run(measure(args.streams, args.reports, args.interval))
        results[name] = percentiles(values)
        p50, p99, worst = results[name]
        print(
            f"{name:5s} {len(values)} deliveries: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {worst:.1f} ms",
            flush=True,
        )
    ratio = results["kiln"][0] / results["raw"][0] if results["raw"][0] else float("nan")
    print(f"kiln/raw p50 = {ratio:.2f}")
    record(args, results, ratio)


def record(args, results, ratio) -> None:
    lines = [
        "",
        f"## watch_fanout — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"{args.streams} gRPC Watch streams on one job ({max(args.streams // 100, 1)} HTTP/2 "
        f"connections), {args.reports} progress reports {args.interval:g} s apart; latency from "
        "the report's return to each stream's receipt. Clients share the 2 cores with the server.",
        "",
        "| server | p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|",
    ]
    for name, label in (
        ("kiln", "kiln (SQLite, event log + hub)"),
        ("raw", "raw grpc.aio broadcast"),
    ):
        p50, p99, worst = results[name]
        lines.append(f"| {label} | {p50:.1f} | {p99:.1f} | {worst:.1f} |")
    lines += ["", f"kiln/raw p50 = {ratio:.2f}", ""]
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
