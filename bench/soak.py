"""Soak: many small jobs through a two-server, three-worker fleet while a worker is killed
and a server restarted; then count what was lost, run twice, or missed by watchers.

Per backend (KILN_DISPATCH=db and =pubsub, both on a fresh PostgreSQL database; pubsub
through Google's Pub/Sub emulator): two `kiln serve` replicas and three `kiln worker`
processes (concurrency 1; two on server A's worker listener, one on server B's), all on
127.0.0.1, KILN_LEASE_SECONDS=5. A few client threads create the jobs (default 1,000) over
both servers, at most --in-flight unfinished at a time:

- mostly a 1 s 240p MP4 of a 1 s 480x360 clip, some a JPG thumbnail, some a 2-rung HLS
  ladder (360p, 240p); ~5 % canceled right after Create, ~5 % with a text file as input
  (→ REJECTED). Every Create carries an idempotency key, so a retry after UNAVAILABLE
  (the server restart) cannot make a second job.
- every job is followed by a watcher thread (Watch; on UNAVAILABLE or a stream that ends
  before `completed` it resumes with `after_sequence` of the last event seen, on the other
  server).
- at ~30 % of jobs terminal one worker is killed with SIGKILL and started again; at ~60 %
  server A gets SIGTERM and is started again on the same ports.

At the end (figures printed, a section appended to bench/RESULTS.md):

- jobs by terminal status, and jobs whose status is not the one their kind expects;
- lost: not terminal when the deadline passed (target 0);
- run twice: (1) a task started more than once (worker logs: `task … (KIND) for job …`)
  with no kill explaining it — the task in flight on the SIGKILLed worker, or a task on a
  worker attached to server A whose lease ran out while A was down, count as explained and
  are listed apart; (2) an output folder under KILN_STORAGE_DIR holding a file the output's
  `files` list does not name (a second run, or partial files left behind). duplicated =
  (1) unexplained + (2); target 0;
- watcher events missed: each watcher's events against a final full replay
  `Watch(after_sequence=0)` after the snapshot it opened with: every `status_change` and
  `completed`, and for each output and status the last `output` event of that status
  (earlier ones of the same status may be coalesced by design; progress is not checked);
  also sequences out of order or repeated. Target 0;
- wall time, from the first Create to the last job terminal.

Run: .venv/bin/python bench/soak.py [--jobs 1000] [--backends db,pubsub] [--timeout 1800]

`--across-hosts` (`make soak-hosts`, as root): the same jobs and watchers with every process
on a host of its own and faults that cross the network: bench/soak_hosts.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import grpc  # noqa: E402
import psycopg  # noqa: E402
from kiln.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc  # noqa: E402

from bench.fleet_support import create_database, drop_database  # noqa: E402
from tests.e2e.cluster import Cluster, ServerProcess  # noqa: E402
from tests.support.pubsub_emulator import PubSubEmulator  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
LEASE_SECONDS = 5
TERMINAL = {
    job_pb2.JOB_STATUS_COMPLETED,
    job_pb2.JOB_STATUS_PARTIAL,
    job_pb2.JOB_STATUS_FAILED,
    job_pb2.JOB_STATUS_REJECTED,
    job_pb2.JOB_STATUS_CANCELED,
}
EXPECTED = {
    "mp4": job_pb2.JOB_STATUS_COMPLETED,
    "jpg": job_pb2.JOB_STATUS_COMPLETED,
    "hls": job_pb2.JOB_STATUS_COMPLETED,
    "cancel": job_pb2.JOB_STATUS_CANCELED,
    "bad": job_pb2.JOB_STATUS_REJECTED,
}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
START_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+: task (\S+) \((TASK_KIND_\w+)\) "
    r"for job (\S+)"
)


def status_name(status: int) -> str:
    return job_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_")


def log_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


# -- processes ------------------------------------------------------------------------------


def start_worker(cluster: Cluster, server: ServerProcess, shared_scratch: bool):
    """Cluster.start_worker, with a scratch folder of its own unless asked to share one
    (workers on separate machines never share scratch space)."""
    index = len(cluster.workers)
    scratch = cluster.scratch_dir if shared_scratch else cluster.root / f"scratch-{index}"
    log = cluster.root / f"worker-{index}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln_cli", "worker"],
        env=cluster.env(
            KILN_SERVER_ADDRESS=server.worker_target,
            KILN_WORKER_CONCURRENCY="1",
            KILN_SCRATCH_DIR=str(scratch),
        ),
        cwd=cluster.root,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    cluster.workers.append(process)
    return process


def make_media(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "clip.mp4"
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", "testsrc2=size=480x360:rate=30"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    command += ["-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    subprocess.run([*command, "-c:a", "aac", str(clip)], check=True)
    bad = folder / "notes.txt"
    bad.write_text("this is not a video\n" * 20)
    return clip, bad


# -- the jobs -------------------------------------------------------------------------------


def plan(count: int, seed: int) -> list[str]:
    """The kind of each job: ~5 % cancel, ~5 % bad input, the rest mostly MP4."""
    rng = random.Random(seed)
    kinds = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.05:
            kinds.append("cancel")
        elif roll < 0.10:
            kinds.append("bad")
        elif roll < 0.22:
            kinds.append("jpg")
        elif roll < 0.32:
            kinds.append("hls")
        else:
            kinds.append("mp4")
    return kinds


def outputs_for(kind: str) -> list[job_pb2.OutputSpec]:
    h264 = job_pb2.VIDEO_CODEC_H264
    if kind == "jpg":
        return [
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_JPG,
                thumbnail=job_pb2.ThumbnailSpec(
                    mode=job_pb2.THUMBNAIL_MODE_SINGLE, time_seconds=0.5, width=160
                ),
            )
        ]
    if kind == "hls":
        return [
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_HLS,
                video=[
                    job_pb2.VideoVariant(codec=h264, resolution="360p"),
                    job_pb2.VideoVariant(codec=h264, resolution="240p"),
                ],
            )
        ]
    return [
        job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_MP4,
            video=[job_pb2.VideoVariant(codec=h264, resolution="240p")],
        )
    ]


@dataclass
class Job:
    index: int
    kind: str
    key: str
    id: str = ""
    server: int = 0
    created_at: float = 0.0
    ended_at: float = 0.0
    status: int = 0
    # The sequence of the snapshot the first stream opened with (events up to it are in it).
    snapshot: int = 0
    # (sequence, event kind, output id, status) of every non-progress event the watcher got.
    seen: list[tuple[int, str, str, int]] = field(default_factory=list)
    resumes: int = 0
    disorder: int = 0
    disorder_notes: list[str] = field(default_factory=list)
    watch_errors: Counter = field(default_factory=Counter)
    final: job_pb2.Job | None = None
    # The open Watch stream and the server it is on (index into Soak.stubs): a stall
    # check may cancel it (bench/soak_hosts.py).
    stream: grpc.Future | None = None
    stream_server: int = 0


def describe(event: job_service_pb2.WatchResponse) -> tuple[int, str, str, int] | None:
    kind = event.WhichOneof("event")
    if kind == "status_change":
        return (event.sequence, kind, "", event.status_change.to_status)
    if kind == "output":
        output = event.output.output
        return (event.sequence, kind, output.id, output.status)
    if kind == "completed":
        return (event.sequence, kind, "", event.completed.job.status)
    return None


class Soak:
    def __init__(self, args, cluster: Cluster, servers: list[ServerProcess], auth) -> None:
        self.args = args
        self.cluster = cluster
        self.auth = auth
        self.stubs = [self._stub(server) for server in servers]
        self.deadline = time.monotonic() + args.timeout
        self.slots = threading.Semaphore(args.in_flight)
        self.lock = threading.Lock()
        self.terminal = 0
        self.terminal_changed = threading.Condition(self.lock)
        self.watchers = ThreadPoolExecutor(max_workers=args.in_flight + 8)
        self.create_retries = 0

    @staticmethod
    def _stub(server: ServerProcess) -> job_service_pb2_grpc.JobServiceStub:
        # A short reconnect backoff: a restarted server is back within seconds.
        channel = grpc.insecure_channel(
            server.grpc_target,
            options=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        return job_service_pb2_grpc.JobServiceStub(channel)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def call(self, job: Job, method: str, request, prefer: int):
        """One unary call, retried on the other server while a server is unavailable."""
        attempt = 0
        while True:
            server = (prefer + attempt) % 2
            try:
                response = getattr(self.stubs[server], method)(
                    request, metadata=self.auth, timeout=30
                )
                return server, response
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or self.remaining() < 0:
                    raise
                with self.lock:
                    self.create_retries += method == "Create"
                attempt += 1
                time.sleep(0.2)

    # -- clients --

    def create_all(self, jobs: list[Job], inputs: tuple[str, str], client: int) -> None:
        """Create `jobs` (client number `client`); `inputs`: the URLs of the clip and of
        the text file the bad jobs get."""
        clip, bad = inputs
        for job in jobs:
            while not self.slots.acquire(timeout=1):
                if self.remaining() < 0:
                    return
            if self.remaining() < 0:
                self.slots.release()
                return
            request = job_service_pb2.CreateRequest(
                input_url=bad if job.kind == "bad" else clip,
                outputs=outputs_for(job.kind),
                priority=(job_pb2.PRIORITY_ECONOMY, job_pb2.PRIORITY_STANDARD)[job.index % 2],
                idempotency_key=job.key,
            )
            job.created_at = time.monotonic()
            job.server, response = self.call(job, "Create", request, prefer=client + job.index)
            job.id = response.job.id
            if job.kind == "cancel":
                try:
                    self.call(job, "Cancel", job_service_pb2.CancelRequest(id=job.id), job.server)
                except grpc.RpcError as error:
                    # Already terminal (it would have to be very quick): counted by status.
                    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise
            self.watchers.submit(self.watch, job)

    def watch(self, job: Job) -> None:
        try:
            self._watch(job)
        finally:
            with self.lock:
                self.terminal += 1
                self.terminal_changed.notify_all()
            self.slots.release()

    def _watch(self, job: Job) -> None:
        last: int | None = None
        server = job.server
        while self.remaining() > 0:
            if last is None:
                request = job_service_pb2.WatchRequest(id=job.id)
            else:
                request = job_service_pb2.WatchRequest(id=job.id, after_sequence=last)
            try:
                stream = self.stubs[server].Watch(
                    request, metadata=self.auth, timeout=max(self.remaining(), 1)
                )
                job.stream, job.stream_server = stream, server
                for event in stream:
                    kind = event.WhichOneof("event")
                    if kind == "snapshot":
                        if last is None:
                            job.snapshot = event.sequence
                            last = event.sequence
                        continue
                    if kind == "heartbeat":
                        continue
                    # A terminal job's snapshot carries the sequence of its `completed`.
                    at_snapshot = kind == "completed" and event.sequence == job.snapshot
                    if last is not None and event.sequence <= last and not at_snapshot:
                        job.disorder += 1
                        opened = (
                            f"after_sequence {request.after_sequence}"
                            if request.HasField("after_sequence")
                            else f"snapshot {job.snapshot}"
                        )
                        job.disorder_notes.append(
                            f"{job.id}: {kind} seq {event.sequence} after seq {last} "
                            f"(stream {job.resumes + 1}, opened with {opened})"
                        )
                    last = event.sequence if last is None else max(last, event.sequence)
                    if (described := describe(event)) is not None:
                        job.seen.append(described)
                    if kind == "completed":
                        job.status = event.completed.job.status
                        job.ended_at = time.monotonic()
                        return
                job.watch_errors["ended before completed"] += 1
            except grpc.RpcError as error:
                job.watch_errors[error.code().name] += 1
                if error.code() not in RETRYABLE | {grpc.StatusCode.CANCELLED}:
                    time.sleep(0.5)
            job.resumes += 1
            server = 1 - server
            time.sleep(0.1)

    def wait_for(self, count: int) -> bool:
        with self.lock:
            while self.terminal < count:
                if self.remaining() < 0:
                    return False
                self.terminal_changed.wait(timeout=1)
        return True

    def replay(self, job: Job) -> list[job_service_pb2.WatchResponse]:
        events: list[job_service_pb2.WatchResponse] = []
        for attempt in range(5):
            events = []
            try:
                stream = self.stubs[attempt % 2].Watch(
                    job_service_pb2.WatchRequest(id=job.id, after_sequence=0),
                    metadata=self.auth,
                    timeout=30,
                )
                events = list(stream)
                return events
            except grpc.RpcError:
                time.sleep(0.5)
        return events


# -- chaos ----------------------------------------------------------------------------------


@dataclass
class Chaos:
    killed_worker_log: Path | None = None
    killed_at: float = 0.0
    killed_task: str = ""
    server_stopped_at: float = 0.0
    server_ready_at: float = 0.0
    server_stop_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def clock(at: float) -> str:
    return f"{datetime.fromtimestamp(at, UTC):%H:%M:%S}"


def last_started(log: Path) -> str:
    task = ""
    for line in log.read_text().splitlines():
        if match := START_LINE.match(line):
            task = match.group(2)
    return task


def run_chaos(soak: Soak, cluster: Cluster, jobs: int, chaos: Chaos) -> None:
    # Worker 0 is attached to server A; SIGKILL it at ~30 % and start it again.
    if not soak.wait_for(int(jobs * 0.3)):
        return
    victim = cluster.workers[0]
    chaos.killed_worker_log = cluster.root / "worker-0.log"
    chaos.killed_at = time.time()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    chaos.killed_task = last_started(chaos.killed_worker_log)
    chaos.notes.append(
        f"{clock(chaos.killed_at)} SIGKILL worker-0 (pid {victim.pid}) "
        f"running {chaos.killed_task or 'nothing'}"
    )
    time.sleep(1)
    start_worker(cluster, cluster.servers[0], soak.args.shared_scratch)
    # Server A at ~60 %: SIGTERM, wait for it to exit, start it again on the same ports.
    if not soak.wait_for(int(jobs * 0.6)):
        return
    server = cluster.servers[0]
    chaos.server_stopped_at = time.time()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)
    chaos.server_stop_seconds = time.time() - chaos.server_stopped_at
    cluster.restart_server(server)
    chaos.server_ready_at = time.time()
    chaos.notes.append(
        f"{clock(chaos.server_stopped_at)} SIGTERM server A (pid {server.process.pid}): exited in "
        f"{chaos.server_stop_seconds:.1f} s, healthy again "
        f"{chaos.server_ready_at - chaos.server_stopped_at:.1f} s after the signal"
    )


# -- one backend ----------------------------------------------------------------------------


@dataclass
class Outcome:
    backend: str
    jobs: int
    wall: float
    statuses: Counter
    unexpected: list[str]
    lost: list[str]
    reruns_explained: list[str]
    reruns_unexplained: list[str]
    stray_files: list[str]
    missed: list[str]
    disorder: int
    disorder_notes: list[str]
    slowest: list[str]
    resumes: int
    watch_errors: Counter
    create_retries: int
    chaos: Chaos
    db_attempts: Counter
    log_excerpts: list[str]

    @property
    def duplicated(self) -> int:
        return len(self.reruns_unexplained) + len(self.stray_files)


def run_backend(backend: str, args, root: Path, media: tuple[Path, Path]) -> Outcome:
    database = create_database("kiln_soak")
    emulator = PubSubEmulator() if backend == "pubsub" else None
    settings = {
        "KILN_DISPATCH": backend,
        "KILN_LEASE_SECONDS": str(LEASE_SECONDS),
        "KILN_LOG_LEVEL": "INFO",
        "KILN_HEARTBEAT_SECONDS": "5",
    }
    if emulator is not None:
        emulator.start()
        settings |= {
            "PUBSUB_EMULATOR_HOST": emulator.host,
            "KILN_PUBSUB_PROJECT": "kiln-soak",
            "KILN_PUBSUB_PREFIX": f"soak{uuid.uuid4().hex[:8]}",
        }
    cluster = Cluster(database, root / backend, media[0].parent, settings=settings)
    cluster.root.mkdir(parents=True)
    try:
        servers = [cluster.start_server(), cluster.start_server()]
        for target in (servers[0], servers[1], servers[0]):
            start_worker(cluster, target, args.shared_scratch)
        auth = (("authorization", f"Bearer {cluster.create_key('org_soak')}"),)
        soak = Soak(args, cluster, servers, auth)
        run = uuid.uuid4().hex[:8]
        jobs = [
            Job(index, kind, f"soak-{run}-{index}")
            for index, kind in enumerate(plan(args.jobs, args.seed))
        ]
        chaos = Chaos()
        started = time.monotonic()
        chaos_thread = threading.Thread(
            target=run_chaos, args=(soak, cluster, args.jobs, chaos), daemon=True
        )
        chaos_thread.start()
        clients = [
            threading.Thread(
                target=soak.create_all,
                args=(jobs[n :: args.clients], (f"file://{media[0]}", f"file://{media[1]}"), n),
                daemon=True,
            )
            for n in range(args.clients)
        ]
        for client in clients:
            client.start()
        last_report = time.monotonic()
        while any(client.is_alive() for client in clients) or soak.terminal < sum(
            1 for job in jobs if job.id
        ):
            if soak.remaining() < -60:
                break
            time.sleep(0.5)
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                print(
                    f"  {backend}: {soak.terminal}/{args.jobs} terminal after "
                    f"{time.monotonic() - started:.0f} s",
                    flush=True,
                )
        soak.watchers.shutdown(wait=False, cancel_futures=True)
        chaos_thread.join(timeout=90)
        ended = [job.ended_at for job in jobs if job.ended_at]
        wall = (max(ended) if ended else time.monotonic()) - started
        print(f"  {backend}: all watchers done after {wall:.0f} s; checking", flush=True)
        return check(backend, args, soak, cluster, jobs, chaos, wall, database)
    except BaseException:
        print(cluster.logs(), flush=True)
        raise
    finally:
        cluster.stop()
        if emulator is not None:
            emulator.stop()
        drop_database(database)
        if args.keep_logs:
            kept = Path(args.keep_logs) / backend
            kept.mkdir(parents=True, exist_ok=True)
            for log in cluster.root.glob("*.log"):
                shutil.copy(log, kept / log.name)


def check(backend, args, soak: Soak, cluster: Cluster, jobs, chaos: Chaos, wall, database):
    # The final state of every job, and a full replay of its event log.
    def final(job: Job) -> list[job_service_pb2.WatchResponse]:
        if job.id:
            _, response = soak.call(job, "Get", job_service_pb2.GetRequest(id=job.id), 0)
            job.final = response.job
            return soak.replay(job)
        return []

    soak.deadline = time.monotonic() + 300
    with ThreadPoolExecutor(max_workers=8) as pool:
        replays = dict(zip([job.index for job in jobs], pool.map(final, jobs), strict=True))

    statuses: Counter = Counter()
    unexpected, lost, missed = [], [], []
    for job in jobs:
        status = job.final.status if job.final is not None else 0
        if status not in TERMINAL:
            lost.append(f"{job.id or f'#{job.index} (never created)'} {status_name(status)}")
            continue
        statuses[status_name(status)] += 1
        if status != EXPECTED[job.kind]:
            error = job.final.error
            unexpected.append(
                f"{job.id} ({job.kind}) {status_name(status)} {error.code} {error.message}"[:200]
            )
        missed += missed_events(job, replays[job.index])

    # Tasks started more than once (every worker process's log).
    starts: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for log in sorted(cluster.root.glob("worker-*.log")):
        for line in log.read_text().splitlines():
            if match := START_LINE.match(line):
                stamp, task, kind, job_id = match.groups()
                starts[task].append((log_time(stamp), log.name, f"{kind} job {job_id}"))
    workers_on_a = {"worker-0.log", "worker-2.log", "worker-3.log"}
    explained, unexplained = [], []
    for task, runs in sorted(starts.items()):
        if len(runs) < 2:
            continue
        runs.sort()
        what = f"{task} ({runs[0][2]}) started {len(runs)}x: " + ", ".join(
            f"{name}@{datetime.fromtimestamp(at):%H:%M:%S.%f}"[:-3] for at, name, _ in runs
        )
        first_at, first_log, _ = runs[0]
        if task == chaos.killed_task and first_log == "worker-0.log":
            explained.append(what + " [in flight on the SIGKILLed worker]")
        elif (
            chaos.server_stopped_at
            and first_log in workers_on_a
            and chaos.server_stopped_at - LEASE_SECONDS * 3
            <= first_at
            <= chaos.server_ready_at + LEASE_SECONDS
        ):
            explained.append(what + " [lease lost while server A restarted]")
        else:
            unexplained.append(what)

    # Output folders holding files their output does not list.
    stray = []
    for job in jobs:
        if job.final is None:
            continue
        for output in job.final.outputs:
            folder = cluster.storage_dir / job.id / output.id
            if not folder.is_dir():
                continue
            on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
            extra = on_disk - {file.path for file in output.files}
            if extra:
                status = job_pb2.OutputStatus.Name(output.status).removeprefix("OUTPUT_STATUS_")
                stray.append(f"{job.id}/{output.id} ({status}): {sorted(extra)[:4]}")

    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT kind, status, attempts FROM tasks").fetchall()
    db_attempts = Counter(f"{kind} {status} attempts={attempts}" for kind, status, attempts in rows)

    excerpts = []
    for log in sorted(cluster.root.glob("*.log")):
        for line in log.read_text().splitlines():
            if " ERROR " in line or "Traceback" in line or " WARNING " in line:
                excerpts.append(f"{log.name}: {line[:300]}")

    watch_errors: Counter = Counter()
    for job in jobs:
        watch_errors.update(job.watch_errors)
    return Outcome(
        backend=backend,
        jobs=args.jobs,
        wall=wall,
        statuses=statuses,
        unexpected=unexpected,
        lost=lost,
        reruns_explained=explained,
        reruns_unexplained=unexplained,
        stray_files=stray,
        missed=missed,
        disorder=sum(job.disorder for job in jobs),
        disorder_notes=[note for job in jobs for note in job.disorder_notes],
        slowest=[
            f"{job.id} ({job.kind}) {job.ended_at - job.created_at:.1f} s"
            for job in sorted(
                (job for job in jobs if job.ended_at),
                key=lambda job: job.created_at - job.ended_at,
            )[:5]
        ],
        resumes=sum(job.resumes for job in jobs),
        watch_errors=watch_errors,
        create_retries=soak.create_retries,
        chaos=chaos,
        db_attempts=db_attempts,
        log_excerpts=excerpts,
    )


def missed_events(job: Job, replay: list[job_service_pb2.WatchResponse]) -> list[str]:
    """What the watcher should have had (after its snapshot) but did not."""
    if not replay:
        return [f"{job.id}: no replay"]
    seen = {entry[0] for entry in job.seen}
    wanted: dict[int, tuple[int, str, str, int]] = {}
    last_of_group: dict[tuple[str, int], int] = {}
    for event in replay:
        described = describe(event)
        if described is None or event.sequence <= job.snapshot:
            continue
        sequence, kind, output, status = described
        if kind == "output":
            last_of_group[(output, status)] = sequence
        else:
            wanted[sequence] = described
    for sequence in last_of_group.values():
        wanted[sequence] = next(d for d in map(describe, replay) if d and d[0] == sequence)
    return [
        f"{job.id}: seq {sequence} {kind} {output} status={status} (resumes {job.resumes})"
        for sequence, (_, kind, output, status) in sorted(wanted.items())
        if sequence not in seen
    ]


# -- report ---------------------------------------------------------------------------------


def report(outcome: Outcome) -> None:
    o = outcome
    print(f"\n== {o.backend}: {o.jobs} jobs, wall {o.wall:.0f} s", flush=True)
    print("  terminal:", dict(sorted(o.statuses.items())))
    print(f"  lost (not terminal at the deadline, target 0): {len(o.lost)}")
    print(
        f"  duplicated (target 0): {o.duplicated} = {len(o.reruns_unexplained)} unexplained "
        f"re-runs + {len(o.stray_files)} output folders with unlisted files; "
        f"{len(o.reruns_explained)} re-runs explained by the kill/restart"
    )
    print(
        f"  watcher events missed (target 0): {len(o.missed)}; out of order/repeated: "
        f"{o.disorder}; resumes: {o.resumes} {dict(o.watch_errors)}"
    )
    print(f"  unexpected statuses: {len(o.unexpected)}; Create retries: {o.create_retries}")
    for note in o.chaos.notes:
        print("  chaos:", note)
    for title, items in (
        ("lost", o.lost),
        ("unexpected", o.unexpected),
        ("re-run, explained", o.reruns_explained),
        ("re-run, UNEXPLAINED", o.reruns_unexplained),
        ("stray files", o.stray_files),
        ("missed", o.missed),
        ("out of order", o.disorder_notes),
        ("slowest Create → completed", o.slowest),
    ):
        for item in items[:10]:
            print(f"  {title}: {item}")
        if len(items) > 10:
            print(f"  {title}: … {len(items) - 10} more")
    print("  tasks by kind/status/attempts:", dict(sorted(o.db_attempts.items())))
    kinds = Counter(
        re.sub(r"(job|tsk|out)_\w+|\d+(\.\d+)?", "#", line.split(" ", 4)[-1])
        for line in o.log_excerpts
    )
    print(f"  warnings/errors in logs: {len(o.log_excerpts)}")
    for text, count in kinds.most_common(12):
        print(f"    {count:5d}x {text[:160]}")


def record(args, outcomes: list[Outcome]) -> None:
    load = os.getloadavg()
    lines = [
        "",
        f"## soak — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, load average at the end {load[0]:.2f} / {load[1]:.2f}. "
        f"PostgreSQL; 2 servers, 3 workers (concurrency 1; 2 on server A, 1 on B); "
        f"KILN_LEASE_SECONDS={LEASE_SECONDS}; {args.jobs} jobs per backend from {args.clients} "
        f"client threads over both servers, ≤ {args.in_flight} unfinished at a time "
        "(1 s 480x360 input; ~58 % MP4 240p, ~12 % JPG thumbnail, ~10 % HLS 360p+240p, ~5 % "
        "canceled after Create, ~5 % text-file input); worker-0 SIGKILLed and restarted at "
        "~30 % terminal, server A SIGTERMed and restarted on its ports at ~60 %.",
        "",
        "| backend | jobs | COMPLETED | CANCELED | REJECTED | other | lost (target 0) "
        "| duplicated (target 0) | re-runs explained by kill/restart | watcher events missed "
        "(target 0) | Watch resumes | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        other = sum(
            count
            for name, count in o.statuses.items()
            if name not in ("COMPLETED", "CANCELED", "REJECTED")
        )
        lines.append(
            f"| {o.backend} | {o.jobs} | {o.statuses['COMPLETED']} | {o.statuses['CANCELED']} "
            f"| {o.statuses['REJECTED']} | {other} | {len(o.lost)} | {o.duplicated} "
            f"| {len(o.reruns_explained)} | {len(o.missed)} | {o.resumes} | {o.wall:.0f} |"
        )
    lines.append("")
    for o in outcomes:
        lines.append(
            f"- {o.backend}: " + "; ".join(o.chaos.notes) + f"; unexpected statuses "
            f"{len(o.unexpected)}; out-of-order or repeated sequences {o.disorder}."
        )
    lines.append("")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--backends", default="db,pubsub")
    parser.add_argument("--clients", type=int, default=4, help="client threads creating jobs")
    parser.add_argument("--in-flight", type=int, default=24, help="unfinished jobs at most")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per backend")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--shared-scratch",
        action="store_true",
        help="all workers share one KILN_SCRATCH_DIR (as tests/e2e/cluster.py does)",
    )
    parser.add_argument("--keep-logs", default="", help="copy the processes' logs here")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--across-hosts",
        action="store_true",
        help="every process on a host of its own, with faults that cross the network "
        "(bench/soak_hosts.py; needs root)",
    )
    args = parser.parse_args()
    backends = [name for name in args.backends.split(",") if name]
    if set(backends) - {"db", "pubsub"}:
        parser.error("backends are db and pubsub")
    if args.across_hosts:
        # Imported here: that module imports this one (its jobs, watchers and checks).
        from bench.soak_hosts import across_hosts

        across_hosts(args, backends)
        return
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kiln-soak-") as tmp:
        root = Path(tmp)
        media = make_media(root / "media")
        for backend in backends:
            outcome = run_backend(backend, args, root, media)
            report(outcome)
            outcomes.append(outcome)
    if not args.no_record:
        record(args, outcomes)


if __name__ == "__main__":
    main()
