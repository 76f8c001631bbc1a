"""Confirm, Retry, DeleteOutputs and probe rejections, through the real server and worker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.conftest import make_clip
from tests.support import plain_http

from .jobs import create_job, run_to_end


# The state changes behind these controls run on both databases in tests/integration (test_store:
# retry, the walk to each state; test_content_keys: delete outputs); driven through the API here,
# they do not depend on the database kind: one is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def wait_for_status(stub, job_id, auth, status) -> job_pb2.Job:
    for event in stub.Watch(job_service_pb2.WatchRequest(id=job_id), metadata=auth, timeout=60):
        kind = event.WhichOneof("event")
        if kind == "snapshot" and event.snapshot.job.status == status:
            return event.snapshot.job
        if kind == "status_change" and event.status_change.to_status == status:
            return stub.Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job
    raise AssertionError(f"job ended without reaching {job_pb2.JobStatus.Name(status)}")


def test_delayed_start_waits_for_confirm(server, auth, media_root):
    stub = server.job_stub()
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}", delayed_start=True)
    waiting = wait_for_status(stub, job.id, auth, job_pb2.JOB_STATUS_AWAITING_CONFIRMATION)
    assert waiting.estimated_cost.micros > 0
    assert waiting.estimated_cost.currency == "USD"
    assert waiting.input_info.duration_seconds == pytest.approx(2.0, abs=0.1)
    confirmed = stub.Confirm(job_service_pb2.ConfirmRequest(id=job.id), metadata=auth).job
    assert confirmed.status == job_pb2.JOB_STATUS_PROCESSING
    assert confirmed.HasField("confirm_time")
    final = run_to_end(server, auth, job.id)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED
    assert final.actual_cost.micros > 0
    with pytest.raises(grpc.RpcError) as caught:
        stub.Confirm(job_service_pb2.ConfirmRequest(id=job.id), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_retry_of_canceled_job_runs_again(server, auth, media_root):
    stub = server.job_stub()
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}", delayed_start=True)
    stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
    retried = stub.Retry(job_service_pb2.RetryRequest(id=job.id), metadata=auth).job
    assert retried.status == job_pb2.JOB_STATUS_PENDING
    assert retried.attempt == 2
    assert retried.outputs[0].status == job_pb2.OUTPUT_STATUS_PENDING
    waiting = wait_for_status(stub, job.id, auth, job_pb2.JOB_STATUS_AWAITING_CONFIRMATION)
    assert waiting.attempt == 2
    stub.Confirm(job_service_pb2.ConfirmRequest(id=job.id), metadata=auth)
    assert run_to_end(server, auth, job.id).status == job_pb2.JOB_STATUS_COMPLETED
    with pytest.raises(grpc.RpcError) as caught:
        stub.Retry(job_service_pb2.RetryRequest(id=job.id), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_delete_outputs_removes_files_keeps_record(server, auth, media_root, cluster):
    stub = server.job_stub()
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}")
    final = run_to_end(server, auth, job.id)
    url = final.outputs[0].files[0].url
    assert plain_http.get(url, timeout=30).status_code == 200
    response = stub.DeleteOutputs(job_service_pb2.DeleteOutputsRequest(id=job.id), metadata=auth)
    assert response.deleted_files == 2  # output.mp4 and qc.json
    assert list(response.job.outputs[0].files) == []
    assert response.job.status == job_pb2.JOB_STATUS_COMPLETED
    assert plain_http.get(url, timeout=30).status_code == 404
    assert not (cluster.storage_dir / job.id).exists()


def test_delete_outputs_of_running_job_is_refused(server, auth, media_root):
    stub = server.job_stub()
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}", delayed_start=True)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeleteOutputs(job_service_pb2.DeleteOutputsRequest(id=job.id), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def malformed(media_root) -> dict[str, Path]:
    folder = media_root / "malformed"
    folder.mkdir(exist_ok=True)
    files = {
        "empty": folder / "empty.mp4",
        "text": folder / "notes.mp4",
        "truncated": folder / "truncated.mp4",
        "audio_only": folder / "audio.m4a",
    }
    files["still"] = folder / "still.png"
    files["huge"] = folder / "huge.mkv"
    files["unknown_codec"] = folder / "unknown.mp4"
    files["silent"] = folder / "silent.mp4"
    files["empty"].write_bytes(b"")
    ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run(
        [*ffmpeg, "-f", "lavfi", "-i", "color=size=64x64", "-frames:v", "1", str(files["still"])],
        check=True,
    )
    subprocess.run(
        [
            *ffmpeg,
            "-f",
            "lavfi",
            "-i",
            "color=size=8200x16:rate=1",
            "-frames:v",
            "1",
            "-c:v",
            "ffv1",
            str(files["huge"]),
        ],
        check=True,
    )
    make_clip(files["silent"], seconds=1, audio=False)
    files["text"].write_text("this is not a video\n" * 50)
    whole = make_clip(folder / "whole.mp4", seconds=2)
    data = whole.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    # The sample entry's fourcc renamed to one no decoder knows (past the ftyp brands).
    entry = data.find(b"avc1", 64)
    files["unknown_codec"].write_bytes(data[:entry] + b"qqqq" + data[entry + 4 :])
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "2",
            "-c:a",
            "aac",
            str(files["audio_only"]),
        ],
        check=True,
    )
    return files


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("empty", "INPUT_EMPTY"),
        ("text", "INPUT_NOT_MEDIA"),
        ("truncated", "INPUT_CORRUPT"),
        ("audio_only", "INPUT_NO_VIDEO"),
        ("missing", "INPUT_UNREADABLE"),
        ("still", "INPUT_ZERO_DURATION"),
        ("huge", "INPUT_DIMENSIONS_TOO_LARGE"),
        ("unknown_codec", "INPUT_UNSUPPORTED_CODEC"),
    ],
)
def test_bad_input_is_rejected_and_service_keeps_serving(
    server, auth, media_root, malformed, name, code
):
    path = malformed.get(name, media_root / "malformed" / "does-not-exist.mp4")
    job = create_job(server, auth, f"file://{path}")
    final = run_to_end(server, auth, job.id)
    assert final.status == job_pb2.JOB_STATUS_REJECTED
    assert final.error.code == code
    assert final.error.message
    assert str(media_root) not in final.error.message  # no server paths leak
    assert final.outputs[0].status == job_pb2.OUTPUT_STATUS_CANCELED
    # The next good job still runs.
    good = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}")
    assert run_to_end(server, auth, good.id).status == job_pb2.JOB_STATUS_COMPLETED


def test_audio_output_of_silent_input_is_rejected(server, auth, malformed):
    job = create_job(
        server,
        auth,
        f"file://{malformed['silent']}",
        outputs=[job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)],
    )
    final = run_to_end(server, auth, job.id)
    assert final.status == job_pb2.JOB_STATUS_REJECTED
    assert final.error.code == "INPUT_NO_AUDIO"
