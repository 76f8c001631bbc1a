"""Benchmark: Get and List latency with 10,000 versus 1,000,000 jobs stored (PostgreSQL).

One `kiln serve` on a fresh PostgreSQL database. Jobs (one output each) are written with a
bulk INSERT … SELECT FROM generate_series, not through the API, all in the measured
organization (the worst case for List): ~98 % COMPLETED, 1 % CANCELED, 1 % FAILED. At each
size: Get of random stored jobs, List first page (page_size 20), List filtered by
status FAILED, and List three pages deep by page token: `--calls` sequential calls each over
native gRPC; p50/p99. The floor: a bare grpc.aio server answering the same paths with
kiln's captured answers (same client, same run). Target: p50 growth from 10k to 1M ≤ 1.2x.
The plan PostgreSQL chooses for each List at 1M is printed (EXPLAIN ANALYZE).

Run: .venv/bin/python bench/list_scale.py [--small 10000] [--large 1000000] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import grpc  # noqa: E402
import psycopg  # noqa: E402
from google.protobuf.message import Message  # noqa: E402
from kiln.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc  # noqa: E402

from bench.cp_support import RESULTS, FloorServer, machine_line, percentile  # noqa: E402
from bench.fleet_support import create_database, drop_database  # noqa: E402
from tests.e2e.cluster import Cluster  # noqa: E402

ORG = "org_bench"
TARGET_GROWTH = 1.2


def fill(url: str, first: int, last: int) -> None:
    """Jobs first..last (ids ordered by creation time), one output each, in one statement
    per table."""
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
    ).SerializeToString()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(
            """
            INSERT INTO jobs (id, organization_id, status, stage, progress, priority,
                delayed_start, input_url, concat_input_urls, metadata, webhook_url,
                output_origin, currency, attempt, last_sequence, estimated_cost_micros,
                actual_cost_micros, created_at, updated_at, probed_at, started_at, completed_at)
            SELECT 'job_bench' || lpad(g::text, 22, '0'), %(org)s,
                CASE WHEN g %% 100 = 0 THEN 'FAILED' WHEN g %% 100 = 50 THEN 'CANCELED'
                     ELSE 'COMPLETED' END,
                0, 100, 2, false, 'file:///bench/in.mp4', '[]'::json, '{"n": "1"}'::json, '',
                '', 'USD', 1, 6, 9000, 9000, t, t, t, t, t
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) g,
                LATERAL (SELECT timestamptz '2026-01-01' + g * interval '10 ms') s(t)
            """,
            {"org": ORG, "first": first, "last": last},
        )
        conn.execute(
            """
            INSERT INTO outputs (id, job_id, position, spec, status, progress,
                estimated_cost_micros, actual_cost_micros)
            SELECT 'out_bench' || lpad(g::text, 22, '0'), 'job_bench' || lpad(g::text, 22, '0'),
                0, %(spec)s, 'COMPLETED', 100, 9000, 9000
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
            """,
            {"spec": spec, "first": first, "last": last},
        )
        conn.commit()
        conn.execute("ANALYZE jobs")
        conn.execute("ANALYZE outputs")


def timed(call, requests: list[bytes], metadata) -> dict[str, float]:
    latencies = []
    for request in requests:
        started = time.perf_counter()
        call(request, metadata=metadata)
        latencies.append(time.perf_counter() - started)
    return {
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
    }


def requests_for(stub, metadata, size: int, calls: int) -> dict[str, list[bytes]]:
    ids = [f"job_bench{n:022d}" for n in random.sample(range(1, size + 1), calls)]
    first = job_service_pb2.ListRequest(page_size=20)
    page = stub.List(first, metadata=metadata)
    second = stub.List(
        job_service_pb2.ListRequest(page_size=20, page_token=page.next_page_token),
        metadata=metadata,
    )
    deep = job_service_pb2.ListRequest(page_size=20, page_token=second.next_page_token)
    failed = job_service_pb2.ListRequest(page_size=20, statuses=[job_pb2.JOB_STATUS_FAILED])
    return {
        "Get": [job_service_pb2.GetRequest(id=i).SerializeToString() for i in ids],
        "List": [first.SerializeToString()] * calls,
        "List status=FAILED": [failed.SerializeToString()] * calls,
        "List page 3 (token)": [deep.SerializeToString()] * calls,
    }


PATH: dict[str, tuple[str, type[Message]]] = {
    "Get": ("Get", job_service_pb2.GetResponse),
    "List": ("List", job_service_pb2.ListResponse),
    "List status=FAILED": ("List", job_service_pb2.ListResponse),
    "List page 3 (token)": ("List", job_service_pb2.ListResponse),
}


def measure(target: str, metadata, requests: dict[str, list[bytes]]) -> dict[str, dict]:
    channel = grpc.insecure_channel(target)
    figures = {}
    for name, batch in requests.items():
        method, response = PATH[name]
        call = channel.unary_unary(
            f"/kiln.v1.JobService/{method}", response_deserializer=response.FromString
        )
        call(batch[0], metadata=metadata)  # warm
        figures[name] = timed(call, batch, metadata)
    channel.close()
    return figures


def explain(url: str) -> str:
    with psycopg.connect(url) as conn:
        plans = []
        for label, where in (("List", ""), ("List status=FAILED", "AND status = 'FAILED'")):
            rows = conn.execute(
                "EXPLAIN ANALYZE SELECT * FROM jobs WHERE organization_id = %s "
                f"{where} ORDER BY created_at DESC, id DESC LIMIT 21",
                (ORG,),
            ).fetchall()
            plans.append(f"{label}:\n" + "\n".join("    " + row[0] for row in rows))
        return "\n".join(plans)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--label", default="")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    url = create_database("kiln_scale")
    results: dict[int, dict[str, dict]] = {}
    floors: dict[int, dict[str, dict]] = {}
    fill_seconds: dict[int, float] = {}
    plans = ""
    with tempfile.TemporaryDirectory(prefix="kiln-scale-") as tmp:
        root = Path(tmp)
        (root / "media").mkdir()
        cluster = Cluster(url, root / "c", root / "media", settings={"KILN_LOG_LEVEL": "WARNING"})
        cluster.root.mkdir()
        try:
            key = cluster.create_key(ORG)  # migrates the database
            metadata = (("authorization", f"Bearer {key}"),)
            filled = 0
            for size in (args.small, args.large):
                started = time.monotonic()
                fill(url, filled + 1, size)
                fill_seconds[size] = time.monotonic() - started
                filled = size
                print(f"{size} jobs stored ({fill_seconds[size]:.0f} s)", flush=True)
                server = cluster.start_server()
                stub = job_service_pb2_grpc.JobServiceStub(
                    grpc.insecure_channel(server.grpc_target)
                )
                requests = requests_for(stub, metadata, size, args.calls)
                answers = {
                    name: (stub.Get if PATH[name][0] == "Get" else stub.List)(
                        (
                            job_service_pb2.GetRequest
                            if PATH[name][0] == "Get"
                            else job_service_pb2.ListRequest
                        ).FromString(batch[0]),
                        metadata=metadata,
                    ).SerializeToString()
                    for name, batch in requests.items()
                }
                results[size] = measure(server.grpc_target, metadata, requests)
                # The floor answers each path with one captured answer: Get and List differ.
                floor = FloorServer({"Get": answers["Get"], "List": answers["List"]}, root)
                floors[size] = measure(floor.target, (), requests)
                floor.stop()
                server.process.terminate()
                server.process.wait(timeout=30)
                cluster.servers.remove(server)
                print({size: results[size]}, flush=True)
            plans = explain(url.replace("postgresql+psycopg://", "postgresql://"))
        except Exception:
            print(cluster.logs())
            raise
        finally:
            cluster.stop()
            drop_database(url)
    lines = report(args, results, floors, fill_seconds)
    print("\n".join(lines))
    print(plans)
    if not args.no_record:
        with RESULTS.open("a") as handle:
            handle.write("\n".join(lines))


def report(args, results, floors, fill_seconds) -> list[str]:
    small, large = args.small, args.large
    lines = [
        "",
        f"## list_scale{(' — ' + args.label) if args.label else ''} — "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        machine_line()
        + f" PostgreSQL, one `kiln serve`; {small:,} then {large:,} jobs (one output each) in "
        f"one organization, bulk-inserted ({fill_seconds[small]:.0f} s, "
        f"{fill_seconds[large]:.0f} s); {args.calls} sequential calls per figure over native "
        "gRPC; floor: bare grpc.aio with kiln's captured answers, same run.",
        "",
        f"| figure | floor p50 (ms) | kiln p50 / p99 at {small:,} (ms) | kiln p50 / p99 at "
        f"{large:,} (ms) | growth of p50 | target ≤ {TARGET_GROWTH}x |",
        "|---|---|---|---|---|---|",
    ]
    for name in results[small]:
        a, b = results[small][name], results[large][name]
        growth = b["p50"] / a["p50"]
        lines.append(
            f"| {name} | {floors[large][name]['p50']:.2f} | {a['p50']:.2f} / {a['p99']:.2f} | "
            f"{b['p50']:.2f} / {b['p99']:.2f} | {growth:.2f} | "
            f"{'met' if growth <= TARGET_GROWTH else 'missed'} |"
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    os.environ.setdefault("KILN_LOG_LEVEL", "WARNING")
    main()
