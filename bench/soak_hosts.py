"""The soak across hosts (issue 21): bench/soak.py's jobs and watchers, but every kiln process
on a host of its own (a network namespace on a test LAN, bench/host_lan.py) and a chaos
schedule of faults that cross the network (bench/host_chaos.py).

Per backend (KILN_DISPATCH=db, then =pubsub), on fresh services: two replicas (hosts a, b),
three workers (hosts w1-w3, concurrency 1, both replicas' addresses each), a PostgreSQL of
the soak's own, fake-gcs-server holding inputs (gs://) and outputs, and for pubsub Google's
Pub/Sub emulator; KILN_LEASE_SECONDS=6. The clients and watchers run here and speak to both
replicas over the LAN; a call that fails is retried on the other replica, and every failed
call is counted by method and code (INTERNAL or UNKNOWN during the database restart is a
finding: they should be UNAVAILABLE).

Run (as root): python bench/soak.py --across-hosts [--jobs 1000] [--backends db,pubsub]
(`make soak-hosts`); bench/soak.py's other flags apply.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import grpc
from kiln.v1 import job_service_pb2

from bench.host_chaos import ChaosRecord, run_schedule
from bench.host_check import (
    HostOutcome,
    duplicated_outputs,
    explain_reruns,
    final_states,
    judge_jobs,
    log_lines,
)
from bench.host_fleet import (
    HostFleet,
    create_database,
    fleet_settings,
    start_services,
    stop_services,
    upload_inputs,
)
from bench.host_lan import lan
from bench.host_report import record, report
from bench.soak import TERMINAL, Job, Soak, make_media, plan, status_name
from tests.e2e.cluster import Cluster

LEASE_SECONDS = 6
# A job terminal on the server this long while its watcher's stream brings nothing (Watch
# heartbeats come every 5 s here) is a stalled stream.
STALL_SECONDS = 20
STALL_CHECK_SECONDS = 5
# Codes a client retries (on the other replica); INTERNAL and UNKNOWN too, counted apart,
# so that a server's wrong code during an outage is a figure, not a dead client thread.
RETRIED = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


class HostSoak(Soak):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # (when, "Method CODE") of every failed unary call: laid at the faults' doors later.
        self.failed_calls: list[tuple[float, str]] = []
        self.stalls: list[str] = []  # check_stalls's findings

    def call(self, job: Job, method: str, request, prefer: int):
        attempt = 0
        while True:
            server = (prefer + attempt) % 2
            try:
                response = getattr(self.stubs[server], method)(
                    request, metadata=self.auth, timeout=30
                )
                return server, response
            except grpc.RpcError as error:
                with self.lock:
                    self.failed_calls.append((time.time(), f"{method} {error.code().name}"))
                if error.code() not in RETRIED or self.remaining() < 0:
                    raise
                attempt += 1
                time.sleep(0.2)


def run_backend(backend: str, args, root: Path, media: tuple[Path, Path]) -> HostOutcome:
    folder = root / backend
    folder.mkdir(parents=True)
    with lan(["a", "b", "w1", "w2", "w3"]) as (network, hosts):
        services = start_services(network, pubsub=backend == "pubsub")
        fleet = None
        try:
            inputs = upload_inputs(services, *media)
            database = create_database(services, f"kiln_soak_{backend}")
            cluster = Cluster(
                database, folder, media[0].parent, fleet_settings(backend, services, LEASE_SECONDS)
            )
            fleet = HostFleet(
                cluster,
                servers={name: hosts[name] for name in ("a", "b")},
                workers={name: hosts[name] for name in ("w1", "w2", "w3")},
            )
            servers = [fleet.start_server("a"), fleet.start_server("b")]
            for name in fleet.workers:
                fleet.start_worker(name)
            auth = (("authorization", f"Bearer {cluster.create_key('org_soak')}"),)
            soak = HostSoak(args, cluster, servers, auth)
            return soak_on(backend, args, soak, fleet, services, inputs, database)
        except BaseException:
            if fleet is not None:
                for process in fleet.processes:
                    print(f"--- {process.name}\n{process.log.read_text()[-3000:]}")
            raise
        finally:
            if fleet is not None:
                fleet.stop()
            stop_services(services)
            if args.keep_logs:
                kept = Path(args.keep_logs) / f"hosts-{backend}"
                kept.mkdir(parents=True, exist_ok=True)
                for log in folder.glob("*.log"):
                    shutil.copy(log, kept / log.name)


def check_stalls(soak: HostSoak, jobs: list[Job], done: threading.Event) -> None:
    """A Watch stream whose job has been terminal on the server for STALL_SECONDS without
    its `completed` arriving is stalled (heartbeats only): counted, with the replica it was
    on, and cancelled so that its watcher resumes (after_sequence) on the other replica.
    Without this a stalled watcher waits out the whole run."""
    terminal_since: dict[int, float] = {}
    while not done.wait(STALL_CHECK_SECONDS):
        for job in jobs:
            if not job.id or job.ended_at or job.stream is None:
                continue
            try:
                _, response = soak.call(job, "Get", job_service_pb2.GetRequest(id=job.id), 0)
            except grpc.RpcError:
                continue
            if response.job.status not in TERMINAL:
                terminal_since.pop(job.index, None)
                continue
            since = terminal_since.setdefault(job.index, time.time())
            if time.time() - since >= STALL_SECONDS and not job.ended_at:
                replica = "ab"[job.stream_server]
                with soak.lock:
                    soak.stalls.append(
                        f"{job.id} ({status_name(response.job.status)} on the server since "
                        f"{datetime.fromtimestamp(since, UTC):%H:%M:%S} or before): stream on "
                        f"replica {replica} silent but for heartbeats, last sequence seen "
                        f"{max((seen[0] for seen in job.seen), default=job.snapshot)}"
                    )
                job.watch_errors[f"stalled on replica {replica}"] += 1
                terminal_since.pop(job.index, None)
                job.stream.cancel()


def calls_by_fault(failed: list[tuple[float, str]], chaos: ChaosRecord) -> dict[str, Counter]:
    """Failed client calls by the fault they fell in (from its start to 10 s after its
    end: clients reconnect with a backoff of up to a second; the latest such fault when
    two overlap), or "no fault"."""
    grouped: dict[str, Counter] = {}
    for at, call in failed:
        fault = next(
            (f for f in reversed(chaos.faults) if f.started_at <= at <= f.ended_at + 10),
            None,
        )
        key = f"{fault.kind} {fault.target}" if fault is not None else "no fault"
        grouped.setdefault(key, Counter())[call] += 1
    return grouped


def soak_on(backend, args, soak: HostSoak, fleet, services, inputs, database) -> HostOutcome:
    run = uuid.uuid4().hex[:8]
    jobs = [
        Job(index, kind, f"soak-{run}-{index}")
        for index, kind in enumerate(plan(args.jobs, args.seed))
    ]
    chaos = ChaosRecord()
    started = time.monotonic()
    chaos_thread = threading.Thread(
        target=run_schedule,
        args=(fleet, services, LEASE_SECONDS, soak.wait_for, chaos, args.jobs),
        daemon=True,
    )
    chaos_thread.start()
    clients = [
        threading.Thread(
            target=soak.create_all, args=(jobs[n :: args.clients], inputs, n), daemon=True
        )
        for n in range(args.clients)
    ]
    for client in clients:
        client.start()
    stall_check_done = threading.Event()
    stall_check = threading.Thread(
        target=check_stalls, args=(soak, jobs, stall_check_done), daemon=True
    )
    stall_check.start()
    last_report = time.monotonic()
    created = lambda: sum(1 for job in jobs if job.id)  # noqa: E731
    while any(client.is_alive() for client in clients) or soak.terminal < created():
        if soak.remaining() < -60:
            break
        time.sleep(0.5)
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            print(f"  {backend}: {soak.terminal}/{args.jobs} terminal after "
                  f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    ended = [job.ended_at for job in jobs if job.ended_at]
    wall = (max(ended) if ended else time.monotonic()) - started
    # A fault still under way (the run outpaced the schedule) ends before the counting.
    chaos_thread.join(timeout=120)
    stall_check_done.set()
    stall_check.join(timeout=60)
    soak.watchers.shutdown(wait=False, cancel_futures=True)
    print(f"  {backend}: all watchers done after {wall:.0f} s; checking", flush=True)
    soak.deadline = time.monotonic() + 300
    replays = final_states(soak, jobs)
    statuses, unexpected, lost, missed = judge_jobs(jobs, replays)
    reruns, attempts = explain_reruns(fleet, chaos, database, LEASE_SECONDS)
    watch_errors: Counter = Counter()
    for job in jobs:
        watch_errors.update(job.watch_errors)
    return HostOutcome(
        backend=backend,
        jobs=args.jobs,
        wall=wall,
        statuses=statuses,
        unexpected=unexpected,
        lost=lost,
        duplicated=duplicated_outputs(services, jobs),
        missed=missed,
        disorder=sum(job.disorder for job in jobs),
        resumes=sum(job.resumes for job in jobs),
        watch_errors=watch_errors,
        failed_calls=calls_by_fault(soak.failed_calls, chaos),
        reruns=reruns,
        chaos=chaos,
        attempts=attempts,
        log_lines=log_lines(fleet),
        stalls=soak.stalls,
        latencies=sorted(job.ended_at - job.created_at for job in jobs if job.ended_at),
    )


def across_hosts(args, backends: list[str]) -> None:
    """bench/soak.py --across-hosts: each backend in turn, its figures printed, and an
    entry in bench/RESULTS.md."""
    # A SIGTERM (a timeout, a Ctrl-C'd make) unwinds like an exception, so the processes
    # on the hosts, the services and the namespaces are all taken down.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kiln-soak-hosts-") as tmp:
        root = Path(tmp)
        media = make_media(root / "media")
        for backend in backends:
            outcome = run_backend(backend, args, root, media)
            report(outcome)
            outcomes.append(outcome)
    if not args.no_record:
        record(args, outcomes, LEASE_SECONDS)
