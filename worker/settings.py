"""The worker's settings, read once from the environment.

A worker needs far less than the server: where the server's WorkerService listens, its
token, where to work and where outputs go. It reads no database settings at all: the
server owns all state, and database credentials stay off worker machines.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.pubsub import PubSubSettings
from common.settings_env import (
    BadSetting,
    comma_list,
    env_float,
    env_int,
    env_port,
    is_loopback_address,
)

DEFAULT_SERVER_ADDRESS = "127.0.0.1:50052"


@dataclass(frozen=True)
class WorkerSettings:
    """Runtime configuration of one worker process (KILN_* variables)."""

    # The server's WorkerService listener (KILN_WORKER_HOST:KILN_WORKER_PORT over there).
    server_address: str = DEFAULT_SERVER_ADDRESS
    # Shared secret sent as a bearer token; the server demands it off loopback.
    token: str = ""
    # Names this worker in leases and logs; hostname-pid when empty.
    worker_id: str = ""
    # Tasks run at once.
    concurrency: int = 1
    scratch_dir: Path = Path("var/scratch")
    # Outputs of jobs without a gs:// origin are written here.
    storage_dir: Path = Path("var/storage")
    # Set when the service writes outputs to GCS by default; the worker reads it only to
    # know whether outputs land on its local disk (the job's origin decides per task).
    gcs_bucket: str = ""
    # The input policy, which must match the server's: roots for file:// inputs, private
    # hosts or CIDR ranges http(s) inputs may reach, buckets gs:// inputs may be read from.
    input_roots: list[str] = field(default_factory=list)
    input_allow_hosts: list[str] = field(default_factory=list)
    gcs_input_buckets: list[str] = field(default_factory=list)
    # FFmpeg writes its progress every 0.5 s (-stats_period): reporting more often sent the
    # same figure twice, and each report is a server round trip and a database write
    # (measured: kiln's own Python 2.1 % of a core at 0.25 s, 1.3 % at 0.5 s, on a ladder).
    progress_interval_seconds: float = 0.5
    # Heartbeat sizing for a task that does not carry its lease length.
    lease_seconds: float = 30.0
    log_level: str = "INFO"
    # Where tasks come from: "db" (long-poll the server) or "pubsub" (pull, then claim).
    dispatch: str = "db"
    pubsub: PubSubSettings = field(default_factory=PubSubSettings)
    # SIGTERM: running tasks get this long to finish, then are given back to the server.
    drain_seconds: float = 30.0
    # Prometheus /metrics of this worker; port 0 (the default) serves none, since workers
    # sharing a machine cannot share a port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # CPU time (seconds) a custom FFmpeg command may use before it is killed.
    custom_cpu_seconds: int = 3600

    @property
    def writes_local_storage(self) -> bool:
        """Outputs go to `storage_dir` unless the service defaults to a GCS bucket."""
        return not self.gcs_bucket


def load_worker_settings(env: Mapping[str, str] | None = None) -> WorkerSettings:
    """Read the KILN_* variables a worker uses; anything unset keeps the embedded default
    (the same defaults the server uses, so `kiln up` and a lone `kiln worker` agree)."""
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("KILN_DATA_DIR", "var"))
    return WorkerSettings(
        server_address=_server_address(env.get("KILN_SERVER_ADDRESS", "")),
        token=env.get("KILN_WORKER_TOKEN", ""),
        worker_id=env.get("KILN_WORKER_ID", ""),
        concurrency=env_int(env, "KILN_WORKER_CONCURRENCY", 1, minimum=1),
        scratch_dir=Path(env.get("KILN_SCRATCH_DIR", str(data_dir / "scratch"))),
        storage_dir=Path(env.get("KILN_STORAGE_DIR", str(data_dir / "storage"))),
        gcs_bucket=env.get("KILN_GCS_BUCKET", ""),
        input_roots=comma_list(env.get("KILN_INPUT_ROOTS", str(data_dir / "inputs"))),
        input_allow_hosts=comma_list(env.get("KILN_INPUT_ALLOW_HOSTS", "")),
        gcs_input_buckets=comma_list(env.get("KILN_GCS_INPUT_BUCKETS", "")),
        progress_interval_seconds=env_float(
            env, "KILN_PROGRESS_INTERVAL_SECONDS", 0.5, positive=True
        ),
        lease_seconds=env_float(env, "KILN_LEASE_SECONDS", 30, positive=True),
        log_level=env.get("KILN_LOG_LEVEL", "INFO"),
        dispatch=env.get("KILN_DISPATCH", "db").strip().lower() or "db",
        pubsub=PubSubSettings.from_env(env),
        drain_seconds=env_float(env, "KILN_WORKER_DRAIN_SECONDS", 30),
        metrics_host=env.get("KILN_WORKER_METRICS_HOST", "") or "127.0.0.1",
        metrics_port=env_port(env, "KILN_WORKER_METRICS_PORT", 0),
        custom_cpu_seconds=env_int(env, "KILN_CUSTOM_CPU_SECONDS", 3600, minimum=1),
    )


def _server_address(value: str) -> str:
    address = value.strip() or DEFAULT_SERVER_ADDRESS
    channel_target(address)  # refused now, with why, rather than at the first call
    return address


def channel_target(address: str) -> str:
    """The gRPC target a worker dials for KILN_SERVER_ADDRESS.

    One address is used as given (`host:port`, or `dns:///name:port` for a name whose
    records list every replica). A comma list of replicas' `IP:port` becomes one target of
    them all: the channel connects to the first that answers and, when that replica stops
    answering, moves to the next, so a replica's restart or loss costs a worker a retried
    call, not its leases (they live in the database, not in the replica).
    """
    replicas = comma_list(address)
    if len(replicas) <= 1 or address.startswith(("ipv4:", "ipv6:")):
        return address
    versions = {_replica_ip(replica).version for replica in replicas}
    if len(versions) > 1:
        raise BadSetting("KILN_SERVER_ADDRESS: list IPv4 or IPv6 replicas, not both")
    return f"ipv{versions.pop()}:{','.join(replicas)}"


def _replica_ip(replica: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host, _, port = replica.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        valid_port = 0 < int(port) < 65536
    except ValueError:
        valid_port = False
    if not valid_port:
        raise BadSetting(
            f"KILN_SERVER_ADDRESS: {replica!r} in a list of replicas is not IP:port "
            "(name each replica by address, e.g. 10.0.0.5:50052, or give one DNS name "
            "whose records list them: dns:///kiln-workers.internal:50052)"
        )
    return address


def local_storage_warning(settings: WorkerSettings) -> str | None:
    """Why a worker on another machine than the server may produce unreachable outputs.

    The server serves local-storage outputs from its own disk. A worker that reaches the
    server over the network and writes to local storage writes to *its* disk instead.
    """
    on_this_machine = all(is_loopback_address(a) for a in comma_list(settings.server_address))
    if on_this_machine or not settings.writes_local_storage:
        return None
    return (
        f"this worker writes outputs to its local disk ({settings.storage_dir}), and the "
        f"server at {settings.server_address} can serve them only if it shares that disk; "
        "on a fleet of machines use GCS: set KILN_GCS_BUCKET"
    )


__all__ = [
    "DEFAULT_SERVER_ADDRESS",
    "WorkerSettings",
    "channel_target",
    "load_worker_settings",
    "local_storage_warning",
]
