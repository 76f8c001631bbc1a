"""What FFmpeg does after the check: redirects, playlists and slow origins, end to end.

The cluster allowlists 127.0.0.2 (the origin) and nothing else; 127.0.0.1 plays an internal
service the job must never reach. Every refusal test asserts that the internal service got
no request at all, not merely that the job failed.
"""

from __future__ import annotations

import base64
import sqlite3
import time

import psycopg
import pytest
from kiln.v1 import job_pb2

from tests.http_origins import Origin, redirect, send, slow_for_ffmpeg, static

from .cluster import running_cluster
from .jobs import create_job, run_to_end


# The input policy is enforced by the worker and its egress proxy: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


ALLOWED = "127.0.0.2"


@pytest.fixture(scope="module")
def refusal_cluster(backend_url, tmp_path_factory, media_root):
    settings = dict(
        KILN_INPUT_ALLOW_HOSTS=ALLOWED,
        KILN_WEBHOOK_ALLOW_HOSTS=ALLOWED,
        KILN_WEBHOOK_MAX_ATTEMPTS="2",
    )
    root = tmp_path_factory.mktemp("refusals")
    with running_cluster(backend_url, root, media_root, settings=settings, workers=1) as running:
        yield running


@pytest.fixture
def origin():
    server = Origin(ALLOWED)
    yield server
    server.close()


@pytest.fixture
def internal():
    """The service behind the trust boundary: it answers anything, so a leak would succeed."""
    server = Origin("127.0.0.1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def clip(media_root) -> bytes:
    return (media_root / "clip2s.mp4").read_bytes()


def run(cluster, server, url: str, **fields) -> job_pb2.Job:
    auth = (("authorization", f"Bearer {cluster.create_key('org_refusals')}"),)
    return run_to_end(server, auth, create_job(server, auth, url, **fields).id)


def assert_refused(job: job_pb2.Job, *fragments: str) -> None:
    assert job.status == job_pb2.JOB_STATUS_REJECTED, job
    assert job.error.code == "INPUT_REFUSED", job.error
    assert job.error.message.startswith("input refused: "), job.error.message
    for fragment in fragments:
        assert fragment in job.error.message, job.error.message


def test_redirect_served_only_to_ffmpeg_is_refused(refusal_cluster, origin, internal, clip):
    cluster, server = refusal_cluster
    internal.routes["/secret.mp4"] = static(clip)
    honest, deceitful = static(clip), redirect(internal.url("/secret.mp4"))

    def two_faced(handler, server_origin) -> None:
        # Honest to the worker's own check, a redirect inward for FFmpeg.
        if handler.headers.get("User-Agent", "").startswith("Lavf"):
            deceitful(handler, server_origin)
        else:
            honest(handler, server_origin)

    origin.routes["/in.mp4"] = two_faced
    job = run(cluster, server, origin.url("/in.mp4"))
    assert_refused(
        job,
        f"redirect to {internal.url('/secret.mp4')} resolves to 127.0.0.1, a loopback address",
    )
    assert any(r.headers.get("user-agent", "").startswith("Lavf") for r in origin.log)
    assert internal.log == []


def hls_playlists(internal: Origin) -> dict[str, str]:
    segment_inward = f"#EXTINF:2.0,\n{internal.url('/seg0.ts')}\n"
    data_segment = "data:video/mp2t;base64," + base64.b64encode(b"G" * 188).decode()
    return {
        "segment": segment_inward,
        "variant": f"#EXT-X-STREAM-INF:BANDWIDTH=500000\n{internal.url('/v0.m3u8')}\n",
        "file": "#EXTINF:2.0,\nfile:///etc/passwd\n",
        "data": f"#EXTINF:2.0,\n{data_segment}\n",
    }


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("segment", "resolves to 127.0.0.1, a loopback address"),
        ("variant", "resolves to 127.0.0.1, a loopback address"),
        ("file", "names file:///etc/passwd, which is not an http(s) URL"),
        ("data", "names data:video/mp2t;base64,"),
    ],
)
def test_playlist_naming_what_the_policy_refuses(refusal_cluster, origin, internal, case, named):
    cluster, server = refusal_cluster
    internal.routes["/seg0.ts"] = internal.routes["/v0.m3u8"] = static(b"G" * 188 * 10)
    body = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n" + hls_playlists(internal)[case]
    origin.routes["/list.m3u8"] = static(body.encode(), "application/vnd.apple.mpegurl")
    job = run(cluster, server, origin.url("/list.m3u8"))
    assert_refused(job, f"playlist {origin.url('/list.m3u8')}", named)
    assert internal.log == []


def test_local_playlist_is_refused(refusal_cluster, media_root, internal):
    cluster, server = refusal_cluster
    playlist = media_root / "local-list.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nfile:///etc/passwd\n")
    job = run(cluster, server, f"file://{playlist}")
    assert_refused(job, "an HLS playlist")


def test_range_origin_is_still_read_in_place(refusal_cluster, origin, clip):
    cluster, server = refusal_cluster
    origin.routes["/clip.mp4"] = static(clip)
    job = run(cluster, server, origin.url("/clip.mp4"))
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    assert job.input_info.supports_byte_ranges
    ffmpeg_requests = [r for r in origin.log if r.headers.get("user-agent", "").startswith("Lavf")]
    # FFmpeg (probe and encode) sought with range requests through the proxy; nobody, the
    # worker included, fetched the file whole.
    assert len(ffmpeg_requests) >= 4
    assert all("range" in request.headers for request in origin.log)


def test_webhook_redirect_inward_is_not_followed(refusal_cluster, media_root, origin, internal):
    cluster, server = refusal_cluster
    internal.routes["/hook"] = lambda handler, _: send(handler, 204, b"")
    origin.routes["/hook"] = redirect(internal.url("/hook"), status=307)
    job = run(
        cluster, server, f"file://{media_root / 'clip2s.mp4'}", webhook_url=origin.url("/hook")
    )
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    # Both attempts (KILN_WEBHOOK_MAX_ATTEMPTS=2) reached the allowed host; the second comes
    # only after the first was answered, so a followed redirect would have arrived by now.
    origin.wait_for("/hook", 2, timeout=30)
    assert internal.log == []


@pytest.fixture
def short_lease_cluster(backend_url, tmp_path, media_root):
    settings = dict(KILN_LEASE_SECONDS="2", KILN_INPUT_ALLOW_HOSTS=ALLOWED)
    with running_cluster(
        backend_url, tmp_path, media_root, settings=settings, workers=1
    ) as running:
        yield running


def probe_claims(database_url: str, job_id: str) -> int:
    """How often the job's probe task was claimed (each claim counts one attempt)."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            query = "SELECT attempts FROM tasks WHERE job_id = ? AND kind = 'PROBE'"
            return connection.execute(query, (job_id,)).fetchone()[0]
    with psycopg.connect(database_url) as connection:
        query = "SELECT attempts FROM tasks WHERE job_id = %s AND kind = 'PROBE'"
        row = connection.execute(query, (job_id,)).fetchone()
        assert row is not None
        return row[0]


@pytest.mark.slow
def test_probe_four_times_longer_than_the_lease_completes(short_lease_cluster, origin, clip):
    cluster, server = short_lease_cluster
    # ffprobe makes three requests for this clip (start, index at the end, back to the data).
    origin.routes["/slow.mp4"] = slow_for_ffmpeg(static(clip), seconds=2.7, requests=3)
    started = time.monotonic()
    job = run(cluster, server, origin.url("/slow.mp4"))
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    assert time.monotonic() - started >= 8  # the probe alone outlived four leases
    assert probe_claims(cluster.database_url, job.id) == 1
