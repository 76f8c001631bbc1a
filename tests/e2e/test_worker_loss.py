"""A worker killed mid-task: its FFmpeg dies with it, the lease expires, another worker finishes."""

from __future__ import annotations

import signal

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support.processes import ffmpeg_pids_writing_to, wait_until

from .cluster import Cluster


@pytest.fixture
def short_lease_cluster(backend_url, tmp_path, media_root):
    cluster = Cluster(backend_url, tmp_path, media_root, settings=dict(KILN_LEASE_SECONDS="2"))
    try:
        yield cluster, cluster.start_server()
    finally:
        cluster.stop()


@pytest.mark.slow
def test_killed_worker_task_runs_again_elsewhere(short_lease_cluster, long_clip):
    cluster, server = short_lease_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_loss')}"),)
    stub = server.job_stub()
    doomed = cluster.start_worker(server)
    job = stub.Create(
        job_service_pb2.CreateRequest(
            input_url=f"file://{long_clip}",
            outputs=[
                job_pb2.OutputSpec(
                    type=job_pb2.OUTPUT_TYPE_MP4,
                    video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="480p")],
                )
            ],
        ),
        metadata=auth,
    ).job
    stream = stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=180)
    progress_seen = []
    for event in stream:
        assert not event.HasField("completed"), event.completed.job.error
        if event.WhichOneof("event") == "progress" and event.progress.progress > 0:
            progress_seen.append(event.progress.progress)
            break
    assert ffmpeg_pids_writing_to(cluster.scratch_dir)

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    # The orphan FFmpeg is killed with its parent (PR_SET_PDEATHSIG), not left encoding.
    wait_until(lambda: not ffmpeg_pids_writing_to(cluster.scratch_dir), timeout=2.0)

    cluster.start_worker(server)
    for event in stream:
        if event.WhichOneof("event") == "progress":
            progress_seen.append(event.progress.progress)
        if event.HasField("completed"):
            final = event.completed.job
            break
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    assert final.outputs[0].files[0].height == 480
    # The second worker started from zero, but the job's progress never went backwards.
    assert progress_seen == sorted(progress_seen)
