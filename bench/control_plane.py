"""Benchmark: control-plane throughput and latency against a bare grpc.aio floor.

Per database (PostgreSQL, SQLite): one `kiln serve` process, no worker running. Measured
from client processes (one per core, the load split between them) over native gRPC:

- Create throughput: `--concurrency` calls in flight in total for `--seconds`, each Create a
  file:// input and one MP4 output; jobs/s and latency p50/p99.
- Get and List (page_size 20) p50/p99: `--sequential` calls one after another from one client.

The floor, measured in the same run by the same client code: a bare grpc.aio server on the
same method paths answering with the bytes kiln answered (captured first), so the messages
are the same and the difference is what kiln does per call.

Run: .venv/bin/python bench/control_plane.py [--databases pg,sqlite] [--seconds 10]
     [--concurrency 32] [--sequential 300] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import grpc  # noqa: E402
from google.protobuf.message import Message  # noqa: E402
from kiln.v1 import job_pb2, job_service_pb2  # noqa: E402

from bench.cp_support import (  # noqa: E402
    FloorServer,
    machine_line,
    make_clip,
    print_and_record,
    summary_ms,
)
from bench.fleet_support import create_database, drop_database  # noqa: E402
from tests.e2e.cluster import Cluster  # noqa: E402

PATHS: dict[str, tuple[type[Message], type[Message]]] = {
    "Create": (job_service_pb2.CreateRequest, job_service_pb2.CreateResponse),
    "Get": (job_service_pb2.GetRequest, job_service_pb2.GetResponse),
    "List": (job_service_pb2.ListRequest, job_service_pb2.ListResponse),
}
TARGETS: dict[str, dict[str, float]] = {
    "pg": {"create_rate": 1000.0, "create_p99_ms": 50.0},
    "sqlite": {"create_rate": 500.0},
}
GET_RATIO_TARGET = 2.0


# -- the client (run as its own process) ---------------------------------------------------


async def client_run(args: argparse.Namespace) -> dict:
    request = bytes.fromhex(args.request)
    _, response_type = PATHS[args.method]
    metadata = (("authorization", f"Bearer {args.key}"),) if args.key else ()
    channel = grpc.aio.insecure_channel(args.target)
    call = channel.unary_unary(
        f"/kiln.v1.JobService/{args.method}", response_deserializer=response_type.FromString
    )
    await call(request, metadata=metadata)  # connection up before the clock starts
    latencies: list[float] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    # All client processes measure the same wall-clock window (CLOCK_MONOTONIC is shared).
    start_at, stop_at = args.start_at, args.start_at + args.seconds

    async def one_caller() -> None:
        done = 0
        while True:
            started = time.monotonic()
            if started >= stop_at or (args.count and done >= args.count):
                return
            try:
                await call(request, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
                continue
            finished = time.monotonic()
            done += 1
            if started >= start_at and finished <= stop_at:
                latencies.append(finished - started)

    delay = start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    _ = loop
    await asyncio.gather(*(one_caller() for _ in range(args.concurrency)))
    await channel.close()
    return {"latencies": latencies, "errors": len(errors), "first_error": errors[:1]}


def run_clients(
    target: str,
    key: str,
    method: str,
    request: bytes,
    *,
    processes: int,
    concurrency: int,
    seconds: float,
    count: int = 0,
) -> dict:
    """Start `processes` client processes sharing `concurrency`; gather what they measured."""
    start_at = time.monotonic() + 1.5
    per_process = [
        concurrency // processes + (i < concurrency % processes) for i in range(processes)
    ]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                method,
                "--target",
                target,
                "--key",
                key,
                "--request",
                request.hex(),
                "--concurrency",
                str(n),
                "--seconds",
                str(seconds),
                "--start-at",
                str(start_at),
                "--count",
                str(count),
            ],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"},
        )
        for n in per_process
        if n
    ]
    latencies: list[float] = []
    errors = 0
    first_error: list[str] = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 120)
        result = json.loads(out)
        latencies += result["latencies"]
        errors += result["errors"]
        first_error += result["first_error"]
    if first_error:
        print(f"  {errors} errors, first: {first_error[0]}", flush=True)
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


# -- the benchmark ------------------------------------------------------------------------


def create_request(media: Path) -> job_service_pb2.CreateRequest:
    return job_service_pb2.CreateRequest(
        input_url=f"file://{media}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
            )
        ],
        metadata={"source": "bench"},
    )


def measure(target: str, key: str, requests: dict[str, bytes], args) -> dict[str, dict]:
    processes = os.cpu_count() or 1
    figures: dict[str, dict] = {}
    create = run_clients(
        target,
        key,
        "Create",
        requests["Create"],
        processes=processes,
        concurrency=args.concurrency,
        seconds=args.seconds,
    )
    figures["Create"] = {
        "rate": len(create["latencies"]) / args.seconds,
        "errors": create["errors"],
        **summary_ms(create["latencies"]),
    }
    for method in ("Get", "List"):
        result = run_clients(
            target,
            key,
            method,
            requests[method],
            processes=1,
            concurrency=1,
            seconds=600,
            count=args.sequential,
        )
        figures[method] = {"errors": result["errors"], **summary_ms(result["latencies"])}
    return figures


def bench_database(name: str, args, root: Path) -> dict[str, dict[str, dict]]:
    media = make_clip(root / "media" / "in.mp4", seconds=1, size="160x90")
    url = create_database("kiln_cp") if name == "pg" else f"sqlite:///{root / 'kiln.db'}"
    cluster = Cluster(url, root / name, root / "media", settings={"KILN_LOG_LEVEL": "WARNING"})
    cluster.root.mkdir(parents=True, exist_ok=True)
    floor = None
    try:
        server = cluster.start_server()
        key = cluster.create_key("org_bench")
        metadata = (("authorization", f"Bearer {key}"),)
        stub = server.job_stub()
        create = create_request(media)
        created = stub.Create(create, metadata=metadata)
        get = job_service_pb2.GetRequest(id=created.job.id)
        lst = job_service_pb2.ListRequest(page_size=20)
        # Twenty jobs so a List page is full, as in the floor's captured answer.
        for _ in range(20):
            stub.Create(create, metadata=metadata)
        requests = {
            "Create": create.SerializeToString(),
            "Get": get.SerializeToString(),
            "List": lst.SerializeToString(),
        }
        answers = {
            "Create": created.SerializeToString(),
            "Get": stub.Get(get, metadata=metadata).SerializeToString(),
            "List": stub.List(lst, metadata=metadata).SerializeToString(),
        }
        floor = FloorServer(answers, root)
        results = {"floor": measure(floor.target, "", requests, args)}
        floor.stop()
        floor = None
        results["kiln"] = measure(server.grpc_target, key, requests, args)
        return results
    except Exception:
        print(cluster.logs())
        raise
    finally:
        if floor:
            floor.stop()
        cluster.stop()
        if name == "pg":
            drop_database(url)


def report(all_results: dict[str, dict[str, dict[str, dict]]], args) -> list[str]:
    lines = [
        "",
        f"## control_plane — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        machine_line()
        + f" One `kiln serve` process, no worker; {os.cpu_count()} client processes over native "
        f"gRPC, {args.concurrency} Creates in flight for {args.seconds:g} s; Get and List "
        f"(page_size 20) {args.sequential} sequential calls. Floor: bare grpc.aio answering the "
        "same paths with kiln's captured answers, same clients, same run.",
        "",
        "| database | figure | floor | kiln | kiln/floor | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, results in all_results.items():
        floor, kiln = results["floor"], results["kiln"]
        fc, kc = floor["Create"], kiln["Create"]
        rate_target = TARGETS[name]["create_rate"]
        lines.append(
            f"| {name} | Create throughput (jobs/s) | {fc['rate']:.0f} | {kc['rate']:.0f} | "
            f"{kc['rate'] / fc['rate']:.2f} | ≥ {rate_target:.0f}: "
            f"{'met' if kc['rate'] >= rate_target else 'missed'} |"
        )
        p99_target = TARGETS[name].get("create_p99_ms")
        lines.append(
            f"| {name} | Create p50 / p99 (ms) | {fc['p50']:.1f} / {fc['p99']:.1f} | "
            f"{kc['p50']:.1f} / {kc['p99']:.1f} | | "
            + (
                f"p99 ≤ {p99_target:.0f}: {'met' if kc['p99'] <= p99_target else 'missed'}"
                if p99_target
                else "—"
            )
            + " |"
        )
        for method in ("Get", "List"):
            f, k = floor[method], kiln[method]
            ratio = k["p50"] / f["p50"]
            target = (
                f"≤ {GET_RATIO_TARGET:.0f}x: {'met' if ratio <= GET_RATIO_TARGET else 'missed'}"
                if method == "Get"
                else "—"
            )
            lines.append(
                f"| {name} | {method} p50 / p99 (ms) | {f['p50']:.2f} / {f['p99']:.2f} | "
                f"{k['p50']:.2f} / {k['p99']:.2f} | {ratio:.2f} | {target} |"
            )
        if kc["errors"]:
            lines.append(f"| {name} | Create errors | | {kc['errors']} | | 0 |")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--databases", default="pg,sqlite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--client", default="", help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--request", default="", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        args.method = args.client
        print(json.dumps(asyncio.run(client_run(args))))
        return
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="kiln-cp-") as tmp:
        for name in args.databases.split(","):
            all_results[name] = bench_database(name, args, Path(tmp))
            print(json.dumps({name: all_results[name]}, indent=1), flush=True)
    print_and_record(report(all_results, args), record=not args.no_record)


if __name__ == "__main__":
    main()
