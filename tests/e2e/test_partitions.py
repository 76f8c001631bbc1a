"""Faults that cross a network: each worker on a test host of its own (a network namespace
with a veth link to the server, tests/support/netns.py), partitioned mid-encode by taking
its link down. On PostgreSQL, as a fleet runs.

Shorter than the lease, a partition costs nothing: the worker's heartbeat gets through when
the link is back and the task is not run again. Longer, the lease expires, the task runs
again on another worker, and when the link comes back the old worker's late reports are
refused (ABORTED): it stops, and exactly one set of files is stored.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.netns import NetworkHost, network_hosts
from tests.support.processes import ffmpeg_children_of, wait_until

from .cluster import Cluster, ServerProcess
from .jobs import create_job, mp4_output, run_to_end

TOKEN = "partition-test-token"


@pytest.fixture
def hosts() -> Iterator[list[NetworkHost]]:
    with network_hosts(2) as made:
        yield made


def partition_cluster(
    database_url: str, root: Path, media_root: Path, lease_seconds: int
) -> tuple[Cluster, ServerProcess]:
    cluster = Cluster(
        database_url,
        root,
        media_root,
        settings=dict(
            KILN_LEASE_SECONDS=str(lease_seconds),
            # Reached over the veth links, so not on loopback: a token is required.
            KILN_WORKER_HOST="0.0.0.0",
            KILN_WORKER_TOKEN=TOKEN,
        ),
    )
    return cluster, cluster.start_server()


@pytest.fixture
def database_url(postgres_available) -> Iterator[str]:
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def worker_on(
    cluster: Cluster, server: ServerProcess, host: NetworkHost, name: str
) -> subprocess.Popen:
    return cluster.start_worker(
        server,
        extra_env={
            "KILN_SERVER_ADDRESS": f"{host.server_address}:{server.worker_port}",
            "KILN_WORKER_ID": name,
        },
        inside=host.command,
    )


def task_attempts(database_url: str, job_id: str) -> dict[str, int]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT kind, attempts FROM tasks WHERE job_id = %s", (job_id,)
        ).fetchall()
    return {kind: attempts for kind, attempts in rows}


def hold_partition(seconds: float) -> None:
    """The fault's own duration, as a chaos schedule would hold it: not a wait standing in
    for synchronisation (what follows waits on conditions)."""
    time.sleep(seconds)


def worker_log(cluster: Cluster, worker: subprocess.Popen) -> Callable[[], str]:
    """Reads the worker's log as it is now (the cluster names logs by start order)."""
    path = cluster.root / f"worker-{cluster.workers.index(worker)}.log"
    return path.read_text


def stored_files(cluster: Cluster, job: job_pb2.Job) -> set[str]:
    folder = cluster.storage_dir / job.id
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def test_a_partition_shorter_than_the_lease_costs_no_rerun(
    hosts, database_url, tmp_path, media_root, long_clip
):
    cluster, server = partition_cluster(database_url, tmp_path, media_root, lease_seconds=6)
    try:
        near, _ = hosts
        auth = (("authorization", f"Bearer {cluster.create_key('org_partition')}"),)
        worker = worker_on(cluster, server, near, "near")
        job = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("480p")])
        wait_until(lambda: ffmpeg_children_of(worker.pid), timeout=60)

        near.cut()
        # A quarter of the lease: a heartbeat (or the result, if the encode ends meanwhile)
        # sent into the cut gets through when the link is back (TCP retransmits it).
        hold_partition(1.5)
        near.mend()

        final = run_to_end(server, auth, job.id, timeout=120)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        assert task_attempts(database_url, job.id) == {"PROBE": 1, "TRANSCODE": 1}
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def test_a_partition_longer_than_the_lease_reruns_once_and_refuses_the_late_worker(
    hosts, database_url, tmp_path, media_root, long_clip
):
    cluster, server = partition_cluster(database_url, tmp_path, media_root, lease_seconds=3)
    try:
        near, far = hosts
        auth = (("authorization", f"Bearer {cluster.create_key('org_partition')}"),)
        cut_off = worker_on(cluster, server, near, "cut-off")
        job = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("480p")])
        wait_until(lambda: ffmpeg_children_of(cut_off.pid), timeout=60)
        # Idle on another host: the only task is leased.
        taker = worker_on(cluster, server, far, "taker")

        near.cut()
        # The lease expires, the reaper queues the task again, the other worker takes it.
        wait_until(lambda: task_attempts(database_url, job.id).get("TRANSCODE") == 2, timeout=30)
        wait_until(lambda: ffmpeg_children_of(taker.pid), timeout=30)
        still_encoding = bool(ffmpeg_children_of(cut_off.pid))
        near.mend()

        if still_encoding:
            # Its next heartbeat is refused: it stops its FFmpeg rather than work for nobody.
            wait_until(lambda: not ffmpeg_children_of(cut_off.pid), timeout=20)
        final = run_to_end(server, auth, job.id, timeout=120)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        assert task_attempts(database_url, job.id) == {"PROBE": 1, "TRANSCODE": 2}
        # Whatever the late worker sent was refused as a stale lease (ABORTED), and it
        # said so: either its heartbeat ("lease lost") or its result ("report refused").
        late = worker_log(cluster, cut_off)
        wait_until(lambda: "lease lost" in late() or "report refused" in late(), timeout=30)
        assert cut_off.poll() is None, "the late worker should carry on with other work"
        # One set of files: what the job lists is what storage holds for it.
        output = final.outputs[0]
        listed = {f"{output.id}/{file.path}" for file in output.files}
        assert listed and stored_files(cluster, final) == listed
        # The job's log: exactly one completed output event.
        events = list(
            server.job_stub().Watch(
                job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth
            )
        )
        completed_outputs = [
            e
            for e in events
            if e.WhichOneof("event") == "output"
            and e.output.output.status == job_pb2.OUTPUT_STATUS_COMPLETED
        ]
        assert len(completed_outputs) == 1
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
