"""Real kiln server and worker processes for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from kiln.v1 import job_service_pb2_grpc, origin_service_pb2_grpc

from kiln_cli.keys import create_api_key
from server.config import load_settings
from tests.support import plain_http, warm_start
from tests.support.pubsub_audit import without_client_calls

REPO = Path(__file__).resolve().parents[2]
# A kiln server or worker: forked from the warm-start launcher (tests/support/warm_start.py)
# unless started on another test host.
KilnProcess = subprocess.Popen | warm_start.WarmProcess
SIGNING_KEY = "e2e-signing-key"
# Tries at starting a server on free ports (see Cluster.start_server).
PORT_ATTEMPTS = 3
# Settings of a cluster that reads inputs from a test origin on loopback (the `held_input`
# fixture): the input policy refuses private addresses unless allowed, as a self-hoster
# allows an internal origin.
LOOPBACK_INPUTS = {"KILN_INPUT_ALLOW_HOSTS": "127.0.0.1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kiln_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiln_cli", *args]


def base_env(database_url: str, data_dir: Path, media_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}",
            "KILN_DATABASE_URL": database_url,
            "KILN_DATA_DIR": str(data_dir),
            "KILN_STORAGE_DIR": str(data_dir.parent / "storage"),
            "KILN_INPUT_ROOTS": str(media_root),
            "KILN_SIGNING_KEY": SIGNING_KEY,
            "KILN_HEARTBEAT_SECONDS": "1",
            "KILN_LEASE_SECONDS": "10",
            "KILN_LOG_LEVEL": "WARNING",
        }
    )
    return env


@dataclass
class ServerProcess:
    process: KilnProcess
    http_port: int
    grpc_port: int
    worker_port: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def worker_target(self) -> str:
        """The WorkerService listener (workers only; not the public gRPC port)."""
        return f"127.0.0.1:{self.worker_port}"

    def job_stub(self) -> job_service_pb2_grpc.JobServiceStub:
        return job_service_pb2_grpc.JobServiceStub(grpc.insecure_channel(self.grpc_target))

    def origin_stub(self) -> origin_service_pb2_grpc.OriginServiceStub:
        return origin_service_pb2_grpc.OriginServiceStub(grpc.insecure_channel(self.grpc_target))


@dataclass
class Cluster:
    """Servers and workers sharing one database; stopped together."""

    database_url: str
    root: Path
    media_root: Path
    # Settings every process of this cluster gets on top of the test defaults.
    settings: dict[str, str] = field(default_factory=dict)
    servers: list[ServerProcess] = field(default_factory=list)
    workers: list[KilnProcess] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def storage_dir(self) -> Path:
        return self.root / "storage"

    def env(self, **extra: str) -> dict[str, str]:
        env = base_env(self.database_url, self.data_dir, self.media_root)
        env.update(self.settings)
        env.update(extra)
        return env

    def run_to_exit(self, command: str, **settings: str) -> subprocess.CompletedProcess[str]:
        """`kiln COMMAND` with this cluster's environment plus `settings`, to its exit (for
        commands that must refuse to start). On free ports, so a check that passes when it
        should refuse fails on its own, not on a port another test holds."""
        for port in ("KILN_HTTP_PORT", "KILN_GRPC_PORT", "KILN_WORKER_PORT"):
            settings.setdefault(port, str(free_port()))
        return subprocess.run(
            kiln_command(command),
            env=self.env(**settings),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def create_key(self, organization: str) -> str:
        """A new API key for `organization`: what `kiln create-key` does (the same function,
        with this cluster's settings), run in this process. The command itself is tested
        in test_cli; a process per key cost ~2 s of imports each, a large share of the
        suite's time."""
        settings = load_settings(self.env())
        # On a thread of its own: async tests call this from inside their event loop.
        with ThreadPoolExecutor(max_workers=1) as thread:
            return thread.submit(asyncio.run, create_api_key(settings, organization, "")).result()

    def start_server(self, **settings: str) -> ServerProcess:
        """A server process on free ports; `settings` on top of the cluster's (a replica
        configured differently, e.g. after a key rotation)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            http_port, grpc_port, worker_port = free_port(), free_port(), free_port()
            log = self.root / f"server-{len(self.servers)}.log"
            process = warm_start.start(
                ["serve"],
                env=self.env(
                    KILN_HTTP_PORT=str(http_port),
                    KILN_GRPC_PORT=str(grpc_port),
                    KILN_WORKER_PORT=str(worker_port),
                    **settings,
                ),
                cwd=self.root,
                log=log,
            )
            server = ServerProcess(process, http_port, grpc_port, worker_port, log)
            self.servers.append(server)
            try:
                _wait_healthy(server)
                return server
            except RuntimeError:
                # A free port is free when asked, not when the server binds it: another
                # process of the suite (the other test process, an emulator, a storage
                # server) may take it in between. New ports then; any other failure stands.
                taken = "address already in use" in log.read_text()
                if not taken or attempt == PORT_ATTEMPTS:
                    raise
                log.rename(log.with_suffix(f".port-taken-{attempt}"))
                self.servers.remove(server)
        raise AssertionError("unreachable")

    def restart_server(self, server: ServerProcess) -> ServerProcess:
        """A new server process on the stopped one's ports (its workers reconnect)."""
        assert server.process.poll() is not None, "stop the server first"
        log = self.root / f"server-{len(self.servers)}.log"
        process = warm_start.start(
            ["serve"],
            env=self.env(
                KILN_HTTP_PORT=str(server.http_port),
                KILN_GRPC_PORT=str(server.grpc_port),
                KILN_WORKER_PORT=str(server.worker_port),
            ),
            cwd=self.root,
            log=log,
        )
        restarted = ServerProcess(
            process, server.http_port, server.grpc_port, server.worker_port, log
        )
        self.servers.append(restarted)
        _wait_healthy(restarted)
        return restarted

    def start_worker(
        self,
        server: ServerProcess,
        concurrency: int = 1,
        extra_env: dict[str, str] | None = None,
        inside: Callable[[list[str]], list[str]] | None = None,
    ) -> KilnProcess:
        """A worker process; `inside` wraps its command (e.g. to run it on a test host of
        its own network namespace, tests/support/netns.py)."""
        log = self.root / f"worker-{len(self.workers)}.log"
        env = self.env(
            **{
                "KILN_SERVER_ADDRESS": server.worker_target,
                "KILN_WORKER_CONCURRENCY": str(concurrency),
                "KILN_SCRATCH_DIR": str(self.scratch_dir),
                **(extra_env or {}),
            }
        )
        process: KilnProcess
        if inside is None:
            process = warm_start.start(["worker"], env=env, cwd=self.root, log=log)
        else:
            # Another host's process: exec'd there, not forked from this host's launcher.
            process = subprocess.Popen(
                inside(kiln_command("worker")),
                env=env,
                cwd=self.root,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
        self.workers.append(process)
        return process

    @property
    def scratch_dir(self) -> Path:
        return self.root / "scratch"

    def stop(self) -> None:
        for process in [*self.workers, *(s.process for s in self.servers)]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, *(s.process for s in self.servers)]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        """The end of each process's log (kiln's lines: a Pub/Sub client's call log, which
        fleets on the emulator turn on, is left out)."""
        return "\n".join(
            f"--- {path.name}\n{without_client_calls(path.read_text())[-3000:]}"
            for path in sorted(self.root.glob("*.log"))
        )


@contextmanager
def running_cluster(
    database_url: str,
    root: Path,
    media_root: Path,
    *,
    settings: dict[str, str] | None = None,
    workers: int = 0,
) -> Iterator[tuple[Cluster, ServerProcess]]:
    """One server (and `workers` worker processes) on `database_url`, stopped afterwards;
    the processes' logs are printed when the body fails."""
    cluster = Cluster(database_url, root, media_root, settings=dict(settings or {}))
    try:
        server = cluster.start_server()
        for _ in range(workers):
            cluster.start_worker(server)
        yield cluster, server
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def _wait_healthy(server: ServerProcess, timeout: float = 90.0) -> None:
    """Readiness: poll /healthz until it answers (the process has no other signal). The
    ceiling is generous: on two shared cores a server's imports and migrations took 39 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log.read_text()}")
        try:
            if plain_http.get(f"{server.http_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy in {timeout}s:\n{server.log.read_text()}")
