"""Watch(after_sequence=0) from the real server replays a long event log whole, on both protocols.

The progress events are written into the job's log through the store (as a worker's
reports would be), then the job is canceled through the API, which logs the events that
end a stream. Far more events than the live-coalescing threshold, so nothing may be
skipped on the way out.
"""

from __future__ import annotations

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from server.events.hub import COALESCE_AFTER
from server.store.store import Store

from .cluster import running_cluster
from .connect_json import ConnectJsonClient
from .jobs import create_job

PROGRESS_EVENTS = 60


@pytest.fixture
def lone_server(database_url, tmp_path, media_root):
    with running_cluster(database_url, tmp_path, media_root) as running:
        yield running


async def log_progress(database_url: str, job_id: str, count: int) -> None:
    store = Store(database_url)
    try:
        for step in range(1, count + 1):

            def payload(sequence: int, step: int = step) -> bytes:
                event = job_service_pb2.WatchResponse(
                    sequence=sequence, progress=job_service_pb2.ProgressEvent(progress=step)
                )
                event.time.GetCurrentTime()
                return event.SerializeToString()

            async with store.transaction() as tx:
                await tx.events.append_event(job_id, payload)
    finally:
        await store.close()


async def test_resume_from_zero_replays_every_event(lone_server, database_url, media_root):
    cluster, server = lone_server
    api_key = cluster.create_key("org_resume")
    auth = (("authorization", f"Bearer {api_key}"),)
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}", delayed_start=True)
    await log_progress(database_url, job.id, PROGRESS_EVENTS)
    stub = server.job_stub()
    stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)

    over_grpc = list(
        stub.Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth, timeout=30
        )
    )
    last = over_grpc[-1].sequence
    assert last > PROGRESS_EVENTS > COALESCE_AFTER
    assert [event.sequence for event in over_grpc] == list(range(1, last + 1))
    assert [e.progress.progress for e in over_grpc if e.HasField("progress")] == list(
        range(1, PROGRESS_EVENTS + 1)
    )
    assert over_grpc[-1].completed.job.status == job_pb2.JOB_STATUS_CANCELED

    # Connect JSON writes int64 as a string.
    over_connect = list(
        ConnectJsonClient(server.http_url, api_key).watch({"id": job.id, "after_sequence": 0})
    )
    assert [int(event["sequence"]) for event in over_connect] == list(range(1, last + 1))

    resumed = list(
        stub.Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=5), metadata=auth, timeout=30
        )
    )
    assert [event.sequence for event in resumed] == list(range(6, last + 1))
    with pytest.raises(grpc.RpcError) as caught:
        list(
            stub.Watch(
                job_service_pb2.WatchRequest(id=job.id, after_sequence=last + 1),
                metadata=auth,
                timeout=30,
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
