"""A worker killed mid-task: its FFmpeg dies with it, the lease expires, another worker
finishes, and the files it left in scratch are swept by the next worker to start."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support.processes import ffmpeg_children_of, ffmpeg_pids_writing_to, wait_until

from .cluster import LOOPBACK_INPUTS, Cluster, KilnProcess
from .jobs import create_job, mp4_output


@pytest.fixture
def short_lease_cluster(backend_url, tmp_path, media_root):
    cluster = Cluster(
        backend_url,
        tmp_path,
        media_root,
        settings=dict(KILN_LEASE_SECONDS="2", **LOOPBACK_INPUTS),
    )
    try:
        yield cluster, cluster.start_server()
    finally:
        cluster.stop()


@pytest.mark.slow
def test_killed_worker_task_runs_again_elsewhere(short_lease_cluster, held_input):
    cluster, server = short_lease_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_loss')}"),)
    stub = server.job_stub()
    doomed = cluster.start_worker(server)
    job = stub.Create(
        job_service_pb2.CreateRequest(
            input_url=held_input.url,
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
    held_input.release()
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


@pytest.fixture
def shared_scratch_cluster(sqlite_backend_url, tmp_path, media_root):
    """Workers sharing one scratch disk (the sweep is the worker's own: one database is enough)."""
    cluster = Cluster(
        sqlite_backend_url,
        tmp_path,
        media_root,
        # No drain at the end: the survivor's long encode is given back at once.
        settings=dict(KILN_LEASE_SECONDS="2", KILN_WORKER_DRAIN_SECONDS="0", **LOOPBACK_INPUTS),
    )
    try:
        yield cluster, cluster.start_server()
    finally:
        cluster.stop()


def _scratch_folder_of(worker_pid: int, scratch: Path) -> Path:
    """The scratch folder the worker's running FFmpeg writes into."""
    for pid in ffmpeg_children_of(worker_pid):
        for argument in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            text = argument.decode(errors="replace")
            if text.startswith(f"{scratch}/"):
                return scratch / Path(text).relative_to(scratch).parts[0]
    raise AssertionError(f"no FFmpeg of worker {worker_pid} writes under {scratch}")


@pytest.mark.slow
def test_a_killed_workers_scratch_is_swept_and_a_running_workers_is_kept(
    shared_scratch_cluster, held_input
):
    cluster, server = shared_scratch_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_sweep')}"),)
    scratch = cluster.scratch_dir

    def encoding(worker: KilnProcess, codec: job_pb2.VideoCodec) -> Path:
        create_job(server, auth, held_input.url, outputs=[mp4_output("480p", codec)])
        wait_until(lambda: ffmpeg_children_of(worker.pid), timeout=60)
        return _scratch_folder_of(worker.pid, scratch)

    doomed = cluster.start_worker(server)
    doomed_folder = encoding(doomed, job_pb2.VIDEO_CODEC_H264)
    survivor = cluster.start_worker(server)
    # Both inputs are held (never released here): the survivor is still encoding after the
    # sweep below, whatever the machine's speed.
    survivor_folder = encoding(survivor, job_pb2.VIDEO_CODEC_H265)
    assert doomed_folder != survivor_folder

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    wait_until(lambda: not ffmpeg_children_of(doomed.pid), timeout=5)
    assert any(doomed_folder.iterdir()), "the killed worker left its files behind"

    cluster.start_worker(server)  # sweeps the shared scratch at start
    # Its log line comes after the sweep: waiting for the folder alone raced the line.
    sweeper_log = cluster.root / "worker-2.log"
    wait_until(lambda: "swept 1 scratch folder" in sweeper_log.read_text(), timeout=30)

    assert not doomed_folder.exists()
    assert ffmpeg_children_of(survivor.pid), "the survivor's encode ended before the sweep"
    assert survivor_folder.exists()
