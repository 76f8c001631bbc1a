"""The internal WorkerService refuses bad worker input: no token, stale leases, unknown tasks."""

from __future__ import annotations

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from tests.conftest import create_postgres_database, drop_postgres_database

from .cluster import Cluster
from .jobs import create_job

TOKEN = "worker-secret"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def lone_server(request, tmp_path_factory, media_root):
    """A server with a worker token and no worker: the test plays the worker."""
    root = tmp_path_factory.mktemp("lone")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'kiln.db'}"
    else:
        request.getfixturevalue("postgres_available")
        url = create_postgres_database()
    cluster = Cluster(url, root, media_root, settings=dict(KILN_WORKER_TOKEN=TOKEN))
    try:
        server = cluster.start_server()
        yield cluster, server
    finally:
        cluster.stop()
        if request.param == "postgres":
            drop_postgres_database(url)


def worker_stub(server) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(server.worker_target))


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def make_job(cluster, server, media_root) -> tuple[str, tuple]:
    auth = (("authorization", f"Bearer {cluster.create_key('org_worker_api')}"),)
    return create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}").id, auth


def test_claim_without_token_is_unauthenticated(lone_server):
    _, server = lone_server
    with pytest.raises(grpc.RpcError) as caught:
        worker_stub(server).ClaimTask(wpb.ClaimTaskRequest(worker_id="w", wait_seconds=0.1))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as caught:
        worker_stub(server).ClaimTask(
            wpb.ClaimTaskRequest(worker_id="w", wait_seconds=0.1),
            metadata=(("authorization", "Bearer wrong"),),
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_stale_and_unknown_reports_are_refused_and_change_nothing(lone_server, media_root):
    cluster, server = lone_server
    job_id, auth = make_job(cluster, server, media_root)
    stub = worker_stub(server)
    task = stub.ClaimTask(wpb.ClaimTaskRequest(worker_id="w1", wait_seconds=5), metadata=AUTH).task
    assert task.job_id == job_id and task.kind == wpb.TASK_KIND_PROBE

    with pytest.raises(grpc.RpcError) as caught:
        stub.ReportProgress(
            wpb.ReportProgressRequest(
                task_id=task.id, lease_token=task.lease_token + 7, progress=50
            ),
            metadata=AUTH,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED

    with pytest.raises(grpc.RpcError) as caught:
        stub.CompleteTask(
            wpb.CompleteTaskRequest(
                task_id=task.id,
                lease_token=task.lease_token - 1,
                error=job_pb2.JobError(code="INPUT_NOT_MEDIA", message="forged"),
            ),
            metadata=AUTH,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED

    with pytest.raises(grpc.RpcError) as caught:
        stub.CompleteTask(
            wpb.CompleteTaskRequest(
                task_id="tsk_nope", lease_token=1, input_info=job_pb2.InputInfo()
            ),
            metadata=AUTH,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    job = server.job_stub().Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job
    assert job.status == job_pb2.JOB_STATUS_PROBING
    assert not job.HasField("error")

    # The rightful holder of the lease still finishes the task.
    stub.CompleteTask(
        wpb.CompleteTaskRequest(
            task_id=task.id,
            lease_token=task.lease_token,
            error=job_pb2.JobError(code="INPUT_NOT_MEDIA", message="not a media file"),
        ),
        metadata=AUTH,
    )
    job = server.job_stub().Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job
    assert job.status == job_pb2.JOB_STATUS_REJECTED
    assert job.error.code == "INPUT_NOT_MEDIA"


def test_report_after_cancel_tells_worker_to_stop(lone_server, media_root):
    cluster, server = lone_server
    job_id, auth = make_job(cluster, server, media_root)
    stub = worker_stub(server)
    task = stub.ClaimTask(wpb.ClaimTaskRequest(worker_id="w2", wait_seconds=5), metadata=AUTH).task
    assert task.job_id == job_id
    server.job_stub().Cancel(job_service_pb2.CancelRequest(id=job_id), metadata=auth)
    answer = stub.ReportProgress(
        wpb.ReportProgressRequest(task_id=task.id, lease_token=task.lease_token, progress=10),
        metadata=AUTH,
    )
    assert answer.canceled
    # A result arriving after the cancel is dropped; the job stays CANCELED.
    stub.CompleteTask(
        wpb.CompleteTaskRequest(
            task_id=task.id, lease_token=task.lease_token, input_info=job_pb2.InputInfo()
        ),
        metadata=AUTH,
    )
    job = server.job_stub().Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job
    assert job.status == job_pb2.JOB_STATUS_CANCELED


def probe_task_id(stub, job_id: str) -> wpb.Task:
    """Lease the job's probe by a claim-by-id, the way a Pub/Sub delivery does; the task id
    comes from a first lease, given back at once."""
    for _ in range(20):
        task = stub.ClaimTask(
            wpb.ClaimTaskRequest(worker_id="finder", wait_seconds=2), metadata=AUTH
        ).task
        if task.job_id == job_id:
            stub.ReleaseTask(
                wpb.ReleaseTaskRequest(task_id=task.id, lease_token=task.lease_token),
                metadata=AUTH,
            )
            return task
        # Another test's leftover: give it back too.
        stub.ReleaseTask(
            wpb.ReleaseTaskRequest(task_id=task.id, lease_token=task.lease_token), metadata=AUTH
        )
    raise AssertionError(f"no task of {job_id} to claim")


def test_claim_by_id_leases_a_queued_task_once(lone_server, media_root):
    cluster, server = lone_server
    job_id, _ = make_job(cluster, server, media_root)
    stub = worker_stub(server)
    known = probe_task_id(stub, job_id)

    first = stub.ClaimTask(wpb.ClaimTaskRequest(worker_id="w1", task_id=known.id), metadata=AUTH)
    assert first.task.id == known.id and first.task.lease_token != known.lease_token
    # A duplicate delivery: the task is leased, nothing is handed out, the lease stands.
    again = stub.ClaimTask(wpb.ClaimTaskRequest(worker_id="w2", task_id=known.id), metadata=AUTH)
    assert not again.HasField("task")
    stub.ReportProgress(
        wpb.ReportProgressRequest(task_id=known.id, lease_token=first.task.lease_token),
        metadata=AUTH,
    )
    # An id that names no task, and text that is no task id.
    unknown = stub.ClaimTask(
        wpb.ClaimTaskRequest(worker_id="w2", task_id="tsk_" + "0" * 26), metadata=AUTH
    )
    assert not unknown.HasField("task")
    for bad in ("job_" + "0" * 26, "tsk_../../etc", "tsk_" + "x" * 500):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ClaimTask(wpb.ClaimTaskRequest(worker_id="w2", task_id=bad), metadata=AUTH)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "task_id" in caught.value.details()


def test_release_requeues_at_once_and_only_under_the_current_lease(lone_server, media_root):
    cluster, server = lone_server
    job_id, _ = make_job(cluster, server, media_root)
    stub = worker_stub(server)
    known = probe_task_id(stub, job_id)
    held = stub.ClaimTask(
        wpb.ClaimTaskRequest(worker_id="drainer", task_id=known.id), metadata=AUTH
    ).task

    for token, code in ((held.lease_token + 1, grpc.StatusCode.ABORTED),):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ReleaseTask(
                wpb.ReleaseTaskRequest(task_id=held.id, lease_token=token), metadata=AUTH
            )
        assert caught.value.code() == code
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReleaseTask(
            wpb.ReleaseTaskRequest(task_id="tsk_" + "0" * 26, lease_token=1), metadata=AUTH
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReleaseTask(wpb.ReleaseTaskRequest(task_id=held.id, lease_token=held.lease_token))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # The stale release changed nothing: the holder's lease still works.
    stub.ReportProgress(
        wpb.ReportProgressRequest(task_id=held.id, lease_token=held.lease_token), metadata=AUTH
    )
    stub.ReleaseTask(
        wpb.ReleaseTaskRequest(task_id=held.id, lease_token=held.lease_token, reason="draining"),
        metadata=AUTH,
    )
    # Given back: the old holder is told to stop, and another worker takes the task at once.
    late = stub.ReportProgress(
        wpb.ReportProgressRequest(task_id=held.id, lease_token=held.lease_token), metadata=AUTH
    )
    assert late.canceled
    taken = stub.ClaimTask(
        wpb.ClaimTaskRequest(worker_id="next", task_id=held.id), metadata=AUTH
    ).task
    assert taken.id == held.id
