"""Two server processes on one Postgres: a watcher on one sees every event of a job run on the other."""

from __future__ import annotations

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.conftest import create_postgres_database, drop_postgres_database

from .cluster import Cluster
from .jobs import create_job


@pytest.fixture
def replicas(postgres_available, tmp_path, media_root):
    url = create_postgres_database()
    cluster = Cluster(url, tmp_path, media_root)
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
