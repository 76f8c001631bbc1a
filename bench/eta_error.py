"""Benchmark: how far the server's ETA is from the time a job actually had left.

Jobs of bench/ladder.py's kind (an HLS fMP4 H.264 ladder 1080p / 720p / 480p, x264 veryfast,
of a synthetic 1080p30 source with noise) run one after another through `kiln up` (server and
one worker slot, SQLite). Each is watched to its end; at the first `progress` event at or past
25, 50 and 75 % that carries `eta_seconds`, the estimate is compared with the time the job
really had left (the `completed` event's arrival minus that event's, both on this client's
clock). Prints, per point, the median absolute error in seconds and relative to the time left
(the issue's target: <= 20 % at 50 %), and appends them to bench/RESULTS.md.

Then the queued case: pairs of the same job created together, so the second waits in the
queue for the first's whole run (one slot) and is estimated from the queue and the speed
the worker measured on the earlier jobs. The second is read with Get every half second
from its creation to its end; at 25, 50 and 75 % of its wall time (the first in the queue,
the last while it runs) the first estimate at or past that moment is compared with the time
it really had left (its complete_time, the server's clock, which is this machine's).

Run: .venv/bin/python bench/eta_error.py [--jobs 5] [--pairs 3] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

from kiln.v1 import job_pb2, job_service_pb2  # noqa: E402

from bench.ladder import RESULTS, Kiln, ladder_spec, make_source  # noqa: E402

POINTS = (25.0, 50.0, 75.0)
POLL_SECONDS = 0.5
TERMINAL = {
    job_pb2.JOB_STATUS_COMPLETED,
    job_pb2.JOB_STATUS_PARTIAL,
    job_pb2.JOB_STATUS_FAILED,
    job_pb2.JOB_STATUS_CANCELED,
    job_pb2.JOB_STATUS_REJECTED,
}
# (when, progress, eta, the output was waiting) of one estimate of a queued job.
Estimate = tuple[float, float, float, bool]


def watch_one(kiln: Kiln, source: Path) -> tuple[float, list[tuple[float, float, float]]]:
    """One job to its end: (its wall time, [(when, progress, eta) of each estimate])."""
    start = time.perf_counter()
    job = kiln.stub.Create(
        job_service_pb2.CreateRequest(input_url=f"file://{source}", outputs=[ladder_spec()]),
        metadata=kiln.auth,
    ).job
    estimates = []
    for event in kiln.stub.Watch(
        job_service_pb2.WatchRequest(id=job.id), metadata=kiln.auth, timeout=3600
    ):
        moment = time.perf_counter()
        if event.HasField("progress") and event.progress.HasField("eta_seconds"):
            estimates.append((moment, event.progress.progress, event.progress.eta_seconds))
        if event.HasField("completed"):
            if event.completed.job.status != job_pb2.JOB_STATUS_COMPLETED:
                raise RuntimeError(f"kiln job ended {event.completed.job}")
            return moment - start, [(when - start, p, eta) for when, p, eta in estimates]
    raise RuntimeError("stream closed without completed")


def errors_at(
    total: float, estimates: list[tuple[float, float, float]], point: float
) -> tuple[float, float, float, float] | None:
    """(progress, eta, actual left, absolute error) at the first estimate at or past point."""
    for when, progress, eta in estimates:
        if progress >= point:
            actual = total - when
            return progress, eta, actual, abs(eta - actual)
    return None


def queued_pair(kiln: Kiln, source: Path) -> tuple[float, list[Estimate]]:
    """Two jobs at once on the one slot; the second's wall time and its estimates, with
    when (seconds since its Create) and whether its output was still waiting."""
    request = job_service_pb2.CreateRequest(input_url=f"file://{source}", outputs=[ladder_spec()])
    kiln.stub.Create(request, metadata=kiln.auth)
    created = time.time()
    second = kiln.stub.Create(request, metadata=kiln.auth).job
    estimates: list[Estimate] = []
    while True:
        job = kiln.stub.Get(job_service_pb2.GetRequest(id=second.id), metadata=kiln.auth).job
        moment = time.time() - created
        if job.status in TERMINAL:
            if job.status != job_pb2.JOB_STATUS_COMPLETED:
                raise RuntimeError(f"kiln job ended {job}")
            total = job.complete_time.ToDatetime(UTC).timestamp() - created
            return total, estimates
        if job.HasField("eta_seconds"):
            waiting = job.outputs[0].status == job_pb2.OUTPUT_STATUS_PENDING
            estimates.append((moment, job.progress, job.eta_seconds, waiting))
        time.sleep(POLL_SECONDS)  # a benchmark's sampling interval, not a synchronisation


def errors_at_time(
    total: float, estimates: list[Estimate], point: float
) -> tuple[float, float, float, float, bool] | None:
    """(when, eta, actual left, absolute error, waiting) at the first estimate at or past
    `point` % of the job's wall time."""
    for when, _progress, eta, waiting in estimates:
        if when >= total * point / 100:
            actual = total - when
            return when, eta, actual, abs(eta - actual), waiting
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()

    source = make_source(args.seconds)
    rows: dict[float, list[tuple[float, float, float, float]]] = {p: [] for p in POINTS}
    totals = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-eta-") as tmp:
        kiln = Kiln(Path(tmp) / "kiln", source.parent)
        try:
            for index in range(args.jobs):
                total, estimates = watch_one(kiln, source)
                totals.append(total)
                line = []
                for point in POINTS:
                    found = errors_at(total, estimates, point)
                    if found is not None:
                        rows[point].append(found)
                        progress, eta, actual, _error = found
                        line.append(f"{progress:.0f}%: eta {eta:.1f} s, left {actual:.1f} s")
                print(f"job {index + 1}: {total:.1f} s; " + "; ".join(line), flush=True)
            queued_rows: dict[float, list[tuple[float, float, float, float, bool]]] = {
                p: [] for p in POINTS
            }
            queued_totals = []
            for index in range(args.pairs):
                total, queued_estimates = queued_pair(kiln, source)
                queued_totals.append(total)
                line = []
                for point in POINTS:
                    at = errors_at_time(total, queued_estimates, point)
                    if at is not None:
                        queued_rows[point].append(at)
                        when, eta, actual, _error, waiting = at
                        phase = "queued" if waiting else "running"
                        line.append(f"{when:.1f} s ({phase}): eta {eta:.1f} s, left {actual:.1f} s")
                print(f"queued job {index + 1}: {total:.1f} s; " + "; ".join(line), flush=True)
        finally:
            kiln.stop()

    # (point, n, median abs error, median relative error, median eta, median time left)
    summary: list[tuple[float, int, float | None, float | None, float | None, float | None]] = []
    for point in POINTS:
        measured = rows[point]
        if not measured:
            summary.append((point, 0, None, None, None, None))
            continue
        absolute = statistics.median(row[3] for row in measured)
        relative = statistics.median(row[3] / row[2] for row in measured if row[2] > 0)
        eta = statistics.median(row[1] for row in measured)
        left = statistics.median(row[2] for row in measured)
        summary.append((point, len(measured), absolute, relative, eta, left))
        print(
            f"at {point:.0f} %: median |error| {absolute:.2f} s = {relative * 100:.1f} % of the "
            f"time left (median eta {eta:.1f} s, left {left:.1f} s, n={len(measured)})"
        )
    # (point, n, median abs error, median relative error, median eta, median left, n queued)
    queued_summary: list[
        tuple[float, int, float | None, float | None, float | None, float | None, int]
    ] = []
    for point in POINTS:
        measured_at = queued_rows[point]
        if not measured_at:
            queued_summary.append((point, 0, None, None, None, None, 0))
            continue
        absolute = statistics.median(row[3] for row in measured_at)
        relative = statistics.median(row[3] / row[2] for row in measured_at if row[2] > 0)
        eta = statistics.median(row[1] for row in measured_at)
        left = statistics.median(row[2] for row in measured_at)
        still_queued = sum(1 for row in measured_at if row[4])
        queued_summary.append(
            (point, len(measured_at), absolute, relative, eta, left, still_queued)
        )
        print(
            f"queued, at {point:.0f} % of its time: median |error| {absolute:.2f} s = "
            f"{relative * 100:.1f} % of the time left (median eta {eta:.1f} s, left {left:.1f} "
            f"s, n={len(measured_at)}, {still_queued} still queued)"
        )
    record(args, totals, summary, queued_totals, queued_summary)


def record(args, totals, summary, queued_totals, queued_summary) -> None:
    load = os.getloadavg()
    lines = [
        "",
        f"## eta_error — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, load average at the end {load[0]:.2f} / "
        f"{load[1]:.2f}. {args.jobs} jobs one after another through `kiln up` (one worker slot, "
        f"SQLite): bench/ladder.py's kind, {args.seconds} s 1080p30 source → HLS fMP4 "
        "1080p/720p/480p, x264 veryfast (single pass). Job wall times: "
        + ", ".join(f"{t:.1f}" for t in totals)
        + " s. Error = abs(Progress.eta_seconds - (completed - that event)), at the first "
        "estimate at or past each point.",
        "",
        "| progress | n | median abs. error (s) | median rel. error | median ETA (s) | "
        "median time left (s) |",
        "|---|---|---|---|---|---|",
    ]
    for point, count, absolute, relative, eta, left in summary:
        if absolute is None:
            lines.append(f"| {point:.0f} % | 0 | — | — | — | — |")
        else:
            lines.append(
                f"| {point:.0f} % | {count} | {absolute:.2f} | {relative * 100:.1f} % | "
                f"{eta:.1f} | {left:.1f} |"
            )
    lines += [
        "",
        f"Queued case: {args.pairs} pairs of the same job created together on the one slot; the "
        "second waits for the first's whole run, estimated from the queue and the worker's "
        "measured speed (h264/1080 from the jobs above), then from its own rate. Its wall "
        "times: "
        + ", ".join(f"{t:.1f}" for t in queued_totals)
        + f" s. Get every {POLL_SECONDS} s; error at the first estimate at or past each "
        "share of its wall time, against its complete_time.",
        "",
        "| share of wall time | n (still queued) | median abs. error (s) | median rel. error | "
        "median ETA (s) | median time left (s) |",
        "|---|---|---|---|---|---|",
    ]
    for point, count, absolute, relative, eta, left, waiting in queued_summary:
        if absolute is None:
            lines.append(f"| {point:.0f} % | 0 | — | — | — | — |")
        else:
            lines.append(
                f"| {point:.0f} % | {count} ({waiting}) | {absolute:.2f} | "
                f"{relative * 100:.1f} % | {eta:.1f} | {left:.1f} |"
            )
    lines.append("")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
