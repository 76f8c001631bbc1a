"""PostgreSQL restarted under a running job: every RPC during the outage answers UNAVAILABLE
(never INTERNAL), the server reconnects by itself, and no job, task run or event is lost.

The database is a server of the test's own (tests/support/private_postgres.py), so stopping
it does not touch the shared server the rest of the suite uses.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support import plain_http
from tests.support.private_postgres import PrivatePostgres

from .cluster import LOOPBACK_INPUTS, Cluster, ServerProcess, running_cluster
from .jobs import mp4_output, run_to_end

Auth = tuple[tuple[str, str], ...]


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture
def outage_cluster(postgres, tmp_path, media_root) -> Iterator[tuple[Cluster, ServerProcess]]:
    with running_cluster(
        postgres.url, tmp_path, media_root, settings=LOOPBACK_INPUTS, workers=1
    ) as running:
        yield running


def _watch_in_background(server: ServerProcess, auth: Auth, job_id: str) -> queue.Queue:
    """Every event of the job's Watch, in order, on a queue (None once the stream ends)."""
    events: queue.Queue = queue.Queue()

    def follow() -> None:
        try:
            stream = server.job_stub().Watch(
                job_service_pb2.WatchRequest(id=job_id), metadata=auth, timeout=180
            )
            for event in stream:
                events.put(event)
        finally:
            events.put(None)

    threading.Thread(target=follow, daemon=True).start()
    return events


def _grpc_code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def test_a_postgres_restart_mid_job_answers_unavailable_and_loses_nothing(
    postgres, outage_cluster, held_input, media_root
):
    cluster, server = outage_cluster
    key = cluster.create_key("org_outage")
    auth: Auth = (("authorization", f"Bearer {key}"),)
    stub = server.job_stub()
    job = stub.Create(
        job_service_pb2.CreateRequest(input_url=held_input.url, outputs=[mp4_output("480p")]),
        metadata=auth,
    ).job
    events = _watch_in_background(server, auth, job.id)
    # Encoding (held mid-way until the database is back): the worker holds a lease and
    # reports progress.
    seen = []
    while (event := events.get(timeout=120)) is not None:
        seen.append(event)
        if event.WhichOneof("event") == "progress" and event.progress.progress > 0:
            break
    assert event is not None, "the Watch ended before the job made progress"
    assert seen[0].WhichOneof("event") == "snapshot"

    postgres.stop()
    get = job_service_pb2.GetRequest(id=job.id)
    assert _grpc_code(lambda: stub.Get(get, metadata=auth, timeout=30)) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert (
        _grpc_code(lambda: stub.List(job_service_pb2.ListRequest(), metadata=auth, timeout=30))
        == grpc.StatusCode.UNAVAILABLE
    )
    short_clip = f"file://{media_root / 'clip2s.mp4'}"
    refused_create = job_service_pb2.CreateRequest(input_url=short_clip, outputs=[mp4_output()])
    assert (
        _grpc_code(lambda: stub.Create(refused_create, metadata=auth, timeout=30))
        == grpc.StatusCode.UNAVAILABLE
    )
    # Connect JSON, as curl would send it: 503 and the code a client retries on.
    answer = plain_http.post(
        f"{server.http_url}/kiln.v1.JobService/Get",
        json={"id": job.id},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "unavailable"
    assert "database is unreachable" in answer.json()["message"]

    postgres.start()
    # Back at once: the first call after the restart succeeds.
    assert stub.Get(get, metadata=auth, timeout=30).job.id == job.id
    second = stub.Create(
        job_service_pb2.CreateRequest(input_url=short_clip, outputs=[mp4_output()]),
        metadata=auth,
    ).job
    held_input.release()

    while (event := events.get(timeout=180)) is not None:
        seen.append(event)
    final = seen[-1].completed.job
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    assert run_to_end(server, auth, second.id, timeout=180).status == (job_pb2.JOB_STATUS_COMPLETED)

    # Nothing lost: every status change the log holds after the live stream's snapshot
    # reached the live watcher, in order (progress may be coalesced by design), and the
    # Create refused during the outage wrote nothing.
    replayed = list(
        stub.Watch(job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth)
    )
    opened_at = seen[0].sequence
    live = [e.sequence for e in seen if e.WhichOneof("event") not in ("snapshot", "heartbeat")]
    assert live == sorted(set(live)), "the live stream repeated or reordered an event"
    must_arrive = [
        e.sequence
        for e in replayed
        if e.sequence > opened_at and e.WhichOneof("event") in ("status_change", "completed")
    ]
    assert must_arrive and set(must_arrive) <= set(live), (must_arrive, live)
    assert live[-1] == replayed[-1].sequence
    listed = stub.List(job_service_pb2.ListRequest(), metadata=auth).jobs
    assert sorted(j.id for j in listed) == sorted([job.id, second.id])
    # No rerun: the outage was shorter than the lease, so each task ran once.
    with psycopg.connect(postgres.url) as connection:
        attempts = connection.execute(
            "SELECT kind, attempts FROM tasks WHERE job_id = %s ORDER BY kind", (job.id,)
        ).fetchall()
    assert attempts and all(count == 1 for _, count in attempts), attempts
    server_log = server.log.read_text()
    assert "Traceback" not in server_log
    assert "unexpected error" not in server_log
