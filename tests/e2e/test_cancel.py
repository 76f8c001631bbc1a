"""Cancel reaches a running FFmpeg: the process is gone and nothing partial is left."""

from __future__ import annotations

import os
import time

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support.processes import ffmpeg_pids_writing_to, wait_until


# What Cancel does to FFmpeg and the files does not depend on the database kind: one is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


@pytest.mark.slow
def test_cancel_running_job_stops_ffmpeg_and_removes_partial_files(
    cluster, server, api_key, long_clip
):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{long_clip}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="720p")],
            )
        ],
    )
    job = stub.Create(request, metadata=auth).job
    stream = stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=120)
    for event in stream:
        assert not event.HasField("completed"), event.completed.job.error
        if event.WhichOneof("event") == "progress" and event.progress.progress > 0:
            break
    assert ffmpeg_pids_writing_to(cluster.scratch_dir), "ffmpeg should be running now"
    started = time.monotonic()
    canceled = stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth).job
    assert canceled.status == job_pb2.JOB_STATUS_CANCELED
    assert canceled.outputs[0].status == job_pb2.OUTPUT_STATUS_CANCELED
    # The watcher sees the end too.
    rest = list(stream)
    assert rest[-1].completed.job.status == job_pb2.JOB_STATUS_CANCELED
    wait_until(lambda: not ffmpeg_pids_writing_to(cluster.scratch_dir), timeout=2.0)
    assert time.monotonic() - started <= 2.0
    wait_until(lambda: not any(cluster.scratch_dir.glob("tsk_*")), timeout=2.0)
    assert not (cluster.storage_dir / job.id).exists()
    # Canceled outputs pay for nothing they did not finish.
    got = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    assert got.status == job_pb2.JOB_STATUS_CANCELED
    assert list(got.outputs[0].files) == []
    assert os.path.exists(long_clip)  # the input is never touched


def test_cancel_pending_job(cluster, server, api_key, media_root):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        delayed_start=True,
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
            )
        ],
    )
    job = stub.Create(request, metadata=auth).job
    canceled = stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth).job
    assert canceled.status == job_pb2.JOB_STATUS_CANCELED
    events = list(
        stub.Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth, timeout=10
        )
    )
    assert events[-1].completed.job.status == job_pb2.JOB_STATUS_CANCELED
