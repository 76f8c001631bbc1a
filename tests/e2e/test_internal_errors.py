"""A real failure inside the server: INTERNAL with no detail, a traceback in the log, then recovery.

The failure is made for real: a table the server reads is renamed under the running server,
so its SQL fails as a database outage or a bad migration would make it fail.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2
from kiln.v1 import job_service_pb2
from sqlalchemy import create_engine, text

from server.store.store import sync_url

from .cluster import running_cluster
from .connect_json import ConnectJsonClient, ConnectStreamError
from .jobs import create_job


@pytest.fixture
def lone_server(database_url, tmp_path, media_root):
    with running_cluster(database_url, tmp_path, media_root) as running:
        yield running


def rename_table(database_url: str, old: str, new: str) -> None:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    finally:
        engine.dispose()


def test_unexpected_failure_is_internal_and_logged(lone_server, database_url, media_root):
    cluster, server = lone_server
    api_key = cluster.create_key("org_outage")
    auth = (("authorization", f"Bearer {api_key}"),)
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}", delayed_start=True)
    client = ConnectJsonClient(server.http_url, api_key)
    stub = server.job_stub()

    rename_table(database_url, "outputs", "outputs_moved_away")
    try:
        status, error = client.call("Get", {"id": job.id})
        assert (status, error) == (500, {"code": "internal", "message": "internal error"})

        with pytest.raises(grpc.RpcError) as caught:
            stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert caught.value.details() == "internal error"
        rich = status_pb2.Status.FromString(
            dict(caught.value.trailing_metadata())["grpc-status-details-bin"]
        )
        assert (rich.message, list(rich.details)) == ("internal error", [])

        with pytest.raises(ConnectStreamError) as streamed:
            list(client.watch({"id": job.id}))
        assert streamed.value.error == {"code": "internal", "message": "internal error"}
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=10))
        assert caught.value.code() == grpc.StatusCode.INTERNAL
    finally:
        rename_table(database_url, "outputs_moved_away", "outputs")

    log = server.log.read_text()
    for rpc in ("Get", "Watch"):
        assert f"unexpected error in kiln.v1.JobService/{rpc} for id '{job.id}'" in log
    assert "Traceback (most recent call last)" in log
    assert "outputs" in log  # the database's own complaint is kept for the operator

    # The same server serves again once the database is whole.
    status, body = client.call("Get", {"id": job.id})
    assert (status, body["job"]["id"]) == (200, job.id)
