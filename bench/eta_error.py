"""Benchmark: how far the server's ETA is from the time a job actually had left.

Jobs of bench/ladder.py's kind (an HLS fMP4 H.264 ladder 1080p / 720p / 480p, x264 veryfast,
of a synthetic 1080p30 source with noise) run one after another through `kiln up` (server and
one worker slot, SQLite). Each is watched to its end; at the first `progress` event at or past
25, 50 and 75 % that carries `eta_seconds`, the estimate is compared with the time the job
really had left (the `completed` event's arrival minus that event's, both on this client's
clock). Prints, per point, the median absolute error in seconds and relative to the time left
(the issue's target: <= 20 % at 50 %), and appends them to bench/RESULTS.md.

Run: .venv/bin/python bench/eta_error.py [--jobs 5] [--seconds 20]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5)
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
    record(args, totals, summary)


def record(args, totals, summary) -> None:
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
    lines.append("")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
