"""The soak across hosts' figures: printed per backend, and an entry in bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench.host_chaos import SCHEDULE
from bench.host_check import HostOutcome

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def report(o: HostOutcome) -> None:
    print(f"\n== across hosts, {o.backend}: {o.jobs} jobs, wall {o.wall:.0f} s", flush=True)
    print("  terminal:", dict(sorted(o.statuses.items())))
    print(f"  lost (target 0): {len(o.lost)}")
    print(f"  duplicated output sets (target 0): {len(o.duplicated)}")
    print(
        f"  watcher events missed (target 0): {len(o.missed)}; out of order/repeated: "
        f"{o.disorder}; Watch resumes: {o.resumes} {dict(o.watch_errors)}"
    )
    print(f"  Watch streams stalled (target 0): {len(o.stalls)}")
    print(f"  reruns: {len(o.reruns)}, unexplained {len(o.unexplained)}")
    print(f"  failed client calls (retried): {failed_calls(o)}")
    print(f"  unexpected statuses: {len(o.unexpected)}; Create → completed: {o.latency()}")
    for fault in o.chaos.faults:
        print("  chaos:", fault.line())
    for skipped in o.chaos.skipped:
        print("  chaos skipped:", skipped)
    for title, items in (
        ("lost", o.lost),
        ("unexpected", o.unexpected),
        ("duplicated", o.duplicated),
        ("missed", o.missed),
        ("stalled", o.stalls),
        ("rerun", [rerun.line() for rerun in o.reruns]),
    ):
        for item in items[:40]:
            print(f"  {title}: {item}")
        if len(items) > 40:
            print(f"  {title}: … {len(items) - 40} more")
    print("  tasks by kind/status/attempts:", dict(sorted(o.attempts.items())))
    print(f"  warnings/errors in logs: {sum(o.log_lines.values())}")
    for text, count in o.log_lines.most_common(15):
        print(f"    {count:5d}x {text}")


def failed_calls(o: HostOutcome) -> str:
    return (
        "; ".join(
            f"{fault}: " + ", ".join(f"{call} {n}" for call, n in sorted(calls.items()))
            for fault, calls in o.failed_calls.items()
        )
        or "none"
    )


def record(args, outcomes: list[HostOutcome], lease_seconds: int) -> None:
    load = os.getloadavg()
    schedule = ", ".join(f"{kind} at {share:.0%}" for share, kind in SCHEDULE)
    lines = [
        "",
        f"## soak across hosts — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, load average at the end {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f}. Each process on a host of its own (network namespaces on one bridge): "
        "replicas a and b, workers w1-w3 (concurrency 1, both replicas' addresses); a private "
        "PostgreSQL, fake-gcs-server (inputs and outputs) and, for pubsub, Google's Pub/Sub "
        f"emulator reached over the links; KILN_LEASE_SECONDS={lease_seconds}; {args.jobs} jobs "
        f"per backend from {args.clients} client threads over both replicas, ≤ "
        f"{args.in_flight} unfinished (bench/soak.py's mix). Chaos, by share of jobs terminal: "
        f"{schedule}.",
        "",
        "| backend | jobs | COMPLETED | CANCELED | REJECTED | other | lost (target 0) "
        "| duplicated output sets (target 0) | watcher events missed (target 0) "
        "| Watch streams stalled (target 0) | Watch resumes | reruns (unexplained) | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        other = sum(
            n for name, n in o.statuses.items() if name not in ("COMPLETED", "CANCELED", "REJECTED")
        )
        lines.append(
            f"| {o.backend} | {o.jobs} | {o.statuses['COMPLETED']} | {o.statuses['CANCELED']} "
            f"| {o.statuses['REJECTED']} | {other} | {len(o.lost)} | {len(o.duplicated)} "
            f"| {len(o.missed)} | {len(o.stalls)} | {o.resumes} "
            f"| {len(o.reruns)} ({len(o.unexplained)}) "
            f"| {o.wall:.0f} |"
        )
    for o in outcomes:
        lines += ["", f"{o.backend} — schedule:", ""]
        lines += [f"- {fault.line()}" for fault in o.chaos.faults]
        lines += [f"- skipped: {skipped}" for skipped in o.chaos.skipped]
        lines += ["", f"{o.backend} — Watch streams stalled (job terminal, stream silent):", ""]
        lines += [f"- {stall}" for stall in o.stalls] or ["- none"]
        lines += ["", f"{o.backend} — every rerun:", ""]
        lines += [f"- {rerun.line()}" for rerun in o.reruns] or ["- none"]
        lines += [
            "",
            f"{o.backend} — failed client calls (retried on the other replica), by the "
            f"fault they fell in: {failed_calls(o)}; unexpected statuses "
            f"{len(o.unexpected)}"
            + (f" ({'; '.join(o.unexpected[:5])})" if o.unexpected else "")
            + f"; out-of-order or repeated sequences {o.disorder}; Create → completed "
            f"{o.latency()}.",
        ]
    lines.append("")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))
