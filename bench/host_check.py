"""What the soak across hosts counts after a backend's run: jobs by final status, lost jobs,
duplicated output sets (objects in the outputs bucket under a job's output that its `files`
list does not name), watcher events missed (bench/soak.py's missed_events), and every rerun
explained one by one: each task started more than once (the workers' logs) or with more
than one attempt (the tasks table), laid at the fault of the chaos schedule that its earlier
run met, matched by time and by the worker (process or host) that ran it.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from kiln.v1 import job_pb2, job_service_pb2

from bench.host_chaos import ChaosRecord
from bench.host_fleet import OUTPUT_BUCKET, HostFleet, Services, gcs_client
from bench.soak import EXPECTED, START_LINE, TERMINAL, Job, log_time, missed_events, status_name

# How long after a replica's or the database's return a lease it cost may still run out
# and be taken again: a lease, and the reaper's pass.
AFTERMATH_LEASES = 3


@dataclass
class Lease:
    """One attempt of a task: who held it, when, what became of it."""

    attempt: int
    worker: str  # the process's name (its KILN_WORKER_ID without the slot)
    at: float  # leased
    started: float = 0.0  # the worker logged the task's start (0: never)
    expired: float = 0.0  # the server took the lease back as silent
    cause: str = ""  # for a lease that was not the last: the fault it met


@dataclass
class Rerun:
    task: str
    what: str  # kind and job
    attempts: int  # the tasks table's count
    leases: list[Lease]

    @property
    def explained(self) -> bool:
        return all(lease.cause for lease in self.leases[:-1]) and len(self.leases) > 1

    def line(self) -> str:
        parts = []
        for lease in self.leases:
            text = f"{lease.attempt}) {lease.worker} leased {clock(lease.at)}"
            text += f", started {clock(lease.started)}" if lease.started else ", never started"
            if lease.expired:
                text += f", lease taken back {clock(lease.expired)}"
            if lease is not self.leases[-1]:
                text += f" [{lease.cause or 'UNEXPLAINED'}]"
            parts.append(text)
        return f"{self.task} ({self.what}) attempts={self.attempts}: " + "; ".join(parts)


def clock(stamp: float) -> str:
    return f"{datetime.fromtimestamp(stamp, UTC):%H:%M:%S.%f}"[:-3]


@dataclass
class HostOutcome:
    backend: str
    jobs: int
    wall: float
    statuses: Counter
    unexpected: list[str]
    lost: list[str]
    duplicated: list[str]
    missed: list[str]
    disorder: int
    resumes: int
    watch_errors: Counter
    failed_calls: dict[str, Counter]  # fault (or "no fault") → "Method CODE" → count
    reruns: list[Rerun]
    chaos: ChaosRecord
    attempts: Counter
    log_lines: Counter = field(default_factory=Counter)
    # Watch streams found stalled (bench/soak_hosts.py's check_stalls), one line each.
    stalls: list[str] = field(default_factory=list)
    # Create → the watcher's `completed`, seconds, sorted.
    latencies: list[float] = field(default_factory=list)

    def latency(self) -> str:
        if not self.latencies:
            return "none"
        count = len(self.latencies)
        p50, p99 = self.latencies[count // 2], self.latencies[min(count - 1, count * 99 // 100)]
        return f"p50 {p50:.1f} s, p99 {p99:.1f} s, max {self.latencies[-1]:.1f} s"

    @property
    def unexplained(self) -> list[Rerun]:
        return [rerun for rerun in self.reruns if not rerun.explained]


def final_states(soak, jobs: list[Job]) -> dict[int, list[job_service_pb2.WatchResponse]]:
    """Each job's final state (job.final) and a full replay of its event log."""
    from concurrent.futures import ThreadPoolExecutor

    def final(job: Job) -> list[job_service_pb2.WatchResponse]:
        if not job.id:
            return []
        _, response = soak.call(job, "Get", job_service_pb2.GetRequest(id=job.id), 0)
        job.final = response.job
        return list(soak.replay(job))

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip([job.index for job in jobs], pool.map(final, jobs), strict=True))


LEASED_LINE = re.compile(
    r"^(\S+ \S+) INFO \S+: task (\S+) \((\w+)\) of job (\S+) leased to worker (\S+?)(?:/\d+)? "
    r"\(attempt (\d+)\)"
)
TAKEN_BACK_LINE = re.compile(r"^(\S+ \S+) WARNING \S+: lease of task (\S+) .* expired: worker")


def lease_histories(fleet: HostFleet) -> tuple[dict[str, list[Lease]], dict[str, str]]:
    """task id → its leases in order, from the replicas' logs (granted, taken back) and the
    workers' (started)."""
    leases: dict[str, list[Lease]] = defaultdict(list)
    what: dict[str, str] = {}
    taken_back: dict[str, list[float]] = defaultdict(list)
    starts: dict[tuple[str, str], list[float]] = defaultdict(list)
    for process in fleet.processes:
        for line in process.log.read_text().splitlines():
            if match := LEASED_LINE.match(line):
                stamp, task, kind, job, worker, attempt = match.groups()
                leases[task].append(Lease(int(attempt), worker, log_time(stamp)))
                what[task] = f"{kind} job {job}"
            elif match := TAKEN_BACK_LINE.match(line):
                taken_back[match.group(2)].append(log_time(match.group(1)))
            elif match := START_LINE.match(line):
                starts[(match.group(2), process.name)].append(log_time(match.group(1)))
    for task, history in leases.items():
        history.sort(key=lambda lease: lease.attempt)
        for lease in history:
            lease.started = min(
                (at for at in starts.get((task, lease.worker), []) if at >= lease.at - 1),
                default=0.0,
            )
            lease.expired = min((at for at in taken_back[task] if at > lease.at), default=0.0)
    return {task: history for task, history in leases.items() if history}, what


def cause_of(lease: Lease, next_at: float, fleet: HostFleet, chaos: ChaosRecord,
             lease_seconds: float) -> str:  # fmt: skip
    """The fault that ended `lease` before its task was done (the next lease was granted
    at `next_at`); "" when none fits."""
    hosts = [p.host.name for p in fleet.processes if p.name == lease.worker]
    how = "" if lease.started else " (the claim's answer never reached the worker)"
    for fault in chaos.faults:
        met = lease.at <= fault.started_at <= next_at
        if fault.kind == "kill-worker" and fault.target == lease.worker and met:
            return f"kill -9 of {lease.worker}{how}"
        cut_off = bool(hosts) and fault.target == hosts[0]
        during = lease.at <= fault.ended_at and fault.started_at <= next_at
        if fault.kind.endswith("partition") and cut_off and during:
            short = fault.kind == "short-partition"
            return f"{fault.kind} of {fault.target}{how}" + (
                " - a partition shorter than the lease should cost no rerun" if short else ""
            )
    for fault in chaos.faults:
        aftermath = fault.ended_at + AFTERMATH_LEASES * lease_seconds
        if (
            fault.kind in ("kill-replica", "postgres-restart")
            and fault.started_at - lease_seconds <= lease.at <= fault.ended_at
            and fault.started_at <= next_at <= aftermath
        ):
            return f"{fault.kind} {clock(fault.started_at)}{how}"
    return ""


def explain_reruns(fleet: HostFleet, chaos: ChaosRecord, database: str, lease_seconds: float):
    """Every task leased more than once, each earlier lease laid at a fault's door; and
    the tasks table's tally of attempts."""
    histories, what = lease_histories(fleet)
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT id, kind, attempts, status FROM tasks").fetchall()
    tallies = Counter(f"{kind} {status} attempts={count}" for _, kind, count, status in rows)
    reruns = []
    for task, kind, attempts, _ in rows:
        history = histories.get(task, [])
        if attempts < 2 and len(history) < 2:
            continue
        for lease, following in itertools.pairwise(history):
            lease.cause = cause_of(lease, following.at, fleet, chaos, lease_seconds)
        reruns.append(Rerun(task, what.get(task) or str(kind), attempts, history))
    return sorted(reruns, key=lambda rerun: rerun.leases[0].at if rerun.leases else 0), tallies


def duplicated_outputs(services: Services, jobs: list[Job]) -> list[str]:
    """Output folders in the bucket holding objects their output's `files` does not list."""
    client = gcs_client(services)
    found = []
    for job in jobs:
        if job.final is None:
            continue
        for output in job.final.outputs:
            prefix = f"{job.id}/{output.id}/"
            blobs = client.list_blobs(OUTPUT_BUCKET, prefix=prefix)
            stored = {blob.name[len(prefix) :] for blob in blobs}
            extra = stored - {file.path for file in output.files}
            if extra:
                status = job_pb2.OutputStatus.Name(output.status).removeprefix("OUTPUT_STATUS_")
                found.append(f"{job.id}/{output.id} ({status}): {sorted(extra)[:4]}")
    return found


def judge_jobs(jobs: list[Job], replays) -> tuple[Counter, list[str], list[str], list[str]]:
    statuses: Counter = Counter()
    unexpected, lost, missed = [], [], []
    for job in jobs:
        status = job.final.status if job.final is not None else 0
        if status not in TERMINAL:
            lost.append(f"{job.id or f'#{job.index} (never created)'} {status_name(status)}")
            continue
        statuses[status_name(status)] += 1
        if status != EXPECTED[job.kind]:
            error = job.final.error if job.final is not None else None
            detail = f"{error.code} {error.message}" if error is not None else ""
            unexpected.append(f"{job.id} ({job.kind}) {status_name(status)} {detail}"[:200])
        missed += missed_events(job, replays[job.index])
    return statuses, unexpected, lost, missed


def log_lines(fleet: HostFleet) -> Counter:
    """Warnings and errors in the processes' logs, ids and numbers folded together."""
    lines: Counter = Counter()
    for process in fleet.processes:
        for line in process.log.read_text().splitlines():
            if " ERROR " in line or " WARNING " in line or "Traceback" in line:
                text = re.sub(r"(job|tsk|out)_\w+|\d+(\.\d+)?", "#", line.split(" ", 4)[-1])
                lines[f"{process.name.split('-')[0]}: {text[:150]}"] += 1
    return lines
