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
