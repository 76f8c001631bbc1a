"""Two server processes on one Postgres: a watcher on one sees every event of a job run on
the other, and a worker given both moves to the live one when its own is killed."""

from __future__ import annotations

import signal

import grpc
import psycopg
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.conftest import create_postgres_database, drop_postgres_database

from .cluster import LOOPBACK_INPUTS, Cluster
from .jobs import create_job, mp4_output


@pytest.fixture
def replicas(postgres_available, tmp_path, media_root):
    url = create_postgres_database()
    cluster = Cluster(url, tmp_path, media_root, settings=LOOPBACK_INPUTS)
    try:
        first = cluster.start_server()
        second = cluster.start_server()
        yield cluster, first, second
    finally:
        cluster.stop()
        drop_postgres_database(url)


def test_watcher_on_other_replica_sees_every_event(replicas, media_root):
    cluster, first, second = replicas
    key = cluster.create_key("org_replicas")
    auth = (("authorization", f"Bearer {key}"),)
    job = create_job(first, auth, f"file://{media_root / 'clip2s.mp4'}")
    # No worker yet: the watcher on the replica that will not run the job opens
    # its stream first, so everything after the snapshot arrives live via NOTIFY.
    stream = second.job_stub().Watch(
        job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60
    )
    snapshot = next(stream)
    assert snapshot.snapshot.job.status == job_pb2.JOB_STATUS_PENDING
    assert snapshot.sequence == 0
    cluster.start_worker(first)
    on_second = list(stream)
    logged = [e for e in on_second if e.WhichOneof("event") != "heartbeat"]
    assert [e.sequence for e in logged] == list(range(1, len(logged) + 1))
    assert logged[-1].completed.job.status == job_pb2.JOB_STATUS_COMPLETED
    # The same log through the replica that ran it.
    on_first = list(
        first.job_stub().Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth, timeout=10
        )
    )
    # Identical bytes but for the completed event, whose download URLs are signed at delivery.
    assert [e.SerializeToString() for e in on_first[:-1]] == [
        e.SerializeToString() for e in logged[:-1]
    ]
    kinds = {e.WhichOneof("event") for e in logged}
    assert {"status_change", "progress", "output", "completed"} <= kinds


@pytest.mark.slow
def test_a_worker_moves_to_the_live_replica_when_its_own_is_killed(replicas, held_input):
    """KILN_SERVER_ADDRESS lists both replicas; the one the worker is attached to (the
    first) is killed with SIGKILL mid-encode (its input held until then)."""
    cluster, first, second = replicas
    auth = (("authorization", f"Bearer {cluster.create_key('org_failover')}"),)
    worker = cluster.start_worker(
        first,
        extra_env={"KILN_SERVER_ADDRESS": f"{first.worker_target},{second.worker_target}"},
    )
    job = create_job(first, auth, held_input.url, outputs=[mp4_output("480p")])
    stream = first.job_stub().Watch(
        job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=120
    )
    seen = []
    for event in stream:
        seen.append(event)
        if event.WhichOneof("event") == "progress" and event.progress.progress > 0:
            break

    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    with pytest.raises(grpc.RpcError) as ended:
        seen.extend(stream)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    held_input.release()

    # The watcher resumes on the live replica from the last sequence it saw.
    resumed = list(
        second.job_stub().Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=seen[-1].sequence),
            metadata=auth,
            timeout=120,
        )
    )
    final = resumed[-1].completed.job
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    assert worker.poll() is None, "the worker exited instead of moving on"
    # Nothing missed: every status change of the whole log reached the watcher, in order.
    whole_log = list(
        second.job_stub().Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth
        )
    )
    received = [e.sequence for e in [*seen, *resumed] if e.WhichOneof("event") != "heartbeat"]
    assert received == sorted(received)
    changes = [e.sequence for e in whole_log if e.WhichOneof("event") == "status_change"]
    assert set(changes) <= set(received)
    # Its lease outlived the replica: the task was not run again.
    with psycopg.connect(cluster.database_url) as connection:
        attempts = connection.execute(
            "SELECT kind, attempts FROM tasks WHERE job_id = %s", (job.id,)
        ).fetchall()
    assert attempts and all(count == 1 for _, count in attempts), attempts
