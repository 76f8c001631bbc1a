"""Playback URLs through the running server: every output kind plays from the one URL kiln
hands out, the file server speaks the HTTP players and CDNs expect, and nothing outside an
output's own folder is reachable with its token.

One job (made over gRPC by a real worker) holds every progressive and adaptive output kind;
the checks read its files the way players do: FFmpeg following playlists over HTTP, raw
HTTP requests with ranges and validators, and raw request lines for the path-escape
spellings (an HTTP client library would normalise `..` before sending it).
"""

from __future__ import annotations

import http.client
import os
import time
from urllib.parse import urlsplit

import httpx
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from server.delivery.tokens import PlaybackTokens
from tests.media_probe import decoded_frames
from tests.support import plain_http

from .cluster import Cluster
from .jobs import create_job, run_to_end

SIGNING_KEY = "playback-test-key-0123456789abcdef"
ECONOMY = job_pb2.QUALITY_ECONOMY
H264, VP9 = job_pb2.VIDEO_CODEC_H264, job_pb2.VIDEO_CODEC_VP9
FMP4 = job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
ONE_SECOND = job_pb2.SegmentSpec(duration_seconds=1)


def ladder(
    output_type: job_pb2.OutputType, hls: job_pb2.HlsSpec | None = None
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution=size, quality=ECONOMY)
            for size in ("320x180", "160x90")
        ],
        segments=ONE_SECOND,
        hls=hls,
    )


def single(output_type: job_pb2.OutputType, codec: job_pb2.VideoCodec) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[job_pb2.VideoVariant(codec=codec, resolution="160x90", quality=ECONOMY)],
    )


# (name, spec, how many video variants its playback URL leads to)
OUTPUTS = [
    ("hls-ts", ladder(job_pb2.OUTPUT_TYPE_HLS), 2),
    ("hls-fmp4", ladder(job_pb2.OUTPUT_TYPE_HLS, hls=FMP4), 2),
    ("dash", ladder(job_pb2.OUTPUT_TYPE_DASH), 2),
    ("cmaf", ladder(job_pb2.OUTPUT_TYPE_CMAF), 2),
    ("mp4", single(job_pb2.OUTPUT_TYPE_MP4, H264), 1),
    ("webm", single(job_pb2.OUTPUT_TYPE_WEBM, VP9), 1),
]


# Storage and HTTP are under test, not the database kind.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


@pytest.fixture(scope="module")
def played(backend_url, tmp_path_factory, media_root):
    """A cluster and one completed job with every output kind: (cluster, server, auth, job)."""
    cluster = Cluster(
        backend_url,
        tmp_path_factory.mktemp("playback"),
        media_root,
        settings={"KILN_SIGNING_KEY": SIGNING_KEY},
    )
    try:
        server = cluster.start_server()
        cluster.start_worker(server, concurrency=2)
        auth = (("authorization", f"Bearer {cluster.create_key('org_playback')}"),)
        created = create_job(
            server, auth, f"file://{media_root / 'clip2s.mp4'}", [spec for _, spec, _ in OUTPUTS]
        )
        job = run_to_end(server, auth, created.id, timeout=120)
        assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
        yield cluster, server, auth, job
    finally:
        cluster.stop()


def output_named(job: job_pb2.Job, name: str) -> job_pb2.Output:
    index = [entry[0] for entry in OUTPUTS].index(name)
    return job.outputs[index]


def test_get_gives_each_output_one_playback_url(played):
    _cluster, server, auth, job = played
    again = server.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    listed = server.job_stub().List(job_service_pb2.ListRequest(), metadata=auth).jobs
    entries = {
        "hls-ts": "master.m3u8",
        "hls-fmp4": "master.m3u8",
        "dash": "manifest.mpd",
        "cmaf": "master.m3u8",
        "mp4": "output.mp4",
        "webm": "output.webm",
    }
    for name, entry in entries.items():
        output = output_named(again, name)
        folder = f"{server.http_url}/play/"
        assert output.playback_url.startswith(folder), output.playback_url
        assert output.playback_url == output.playback_base_url + entry
        assert output.playback_base_url.endswith(f"/{job.id}/{output.id}/")
        assert output.playback_url_expire_time.seconds > time.time() + 3600
        # Watch's completed event (the job fixture) and List hand out the same link.
        assert output_named(job, name).playback_url == output.playback_url
    (listed_job,) = [entry for entry in listed if entry.id == job.id]
    assert [o.playback_url for o in listed_job.outputs] == [o.playback_url for o in again.outputs]


@pytest.mark.parametrize("name", [entry[0] for entry in OUTPUTS])
def test_ffmpeg_decodes_every_frame_of_every_variant_from_the_playback_url(
    played, name, media_root
):
    _, _, _, job = played
    output = output_named(job, name)
    source = decoded_frames(str(media_root / "clip2s.mp4"))
    variants = dict((entry[0], entry[2]) for entry in OUTPUTS)[name]
    urls = [output.playback_url]
    if name == "cmaf":
        urls.append(output.playback_base_url + "manifest.mpd")
    for url in urls:
        frames = decoded_frames(url)
        assert frames["video"] == source["video"] * variants, (url, frames)
        assert len(frames["audio"]) >= 1, (url, frames)


def fetch(url: str, **headers: str) -> httpx.Response:
    return plain_http.get(url, headers=headers, timeout=30)


def test_ranges_are_answered_206_with_content_range(played):
    _, _, _, job = played
    url = output_named(job, "mp4").playback_url
    whole = fetch(url)
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    size = len(whole.content)
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=1000-1999": (1000, 1999),
        "bytes=-500": (size - 500, size - 1),
        f"bytes={size - 300}-": (size - 300, size - 1),
    }
    for header, (first, last) in cases.items():
        part = fetch(url, range=header)
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert part.content == whole.content[first : last + 1], header
    beyond = fetch(url, range=f"bytes={size + 10}-{size + 20}")
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"


def test_head_validators_and_if_range(played):
    _, _, _, job = played
    url = output_named(job, "mp4").playback_url
    head = plain_http.head(url, timeout=30)
    whole = fetch(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    etag, modified = whole.headers["etag"], whole.headers["last-modified"]
    assert fetch(url, **{"if-none-match": etag}).status_code == 304
    assert fetch(url, **{"if-none-match": '"another"'}).status_code == 200
    assert fetch(url, **{"if-modified-since": modified}).status_code == 304
    assert fetch(url, range="bytes=0-9", **{"if-range": etag}).status_code == 206
    stale = fetch(url, range="bytes=0-9", **{"if-range": '"stale"'})
    assert stale.status_code == 200 and stale.content == whole.content


def test_cache_control_segments_immutable_manifests_revalidated(played):
    _, _, _, job = played
    hls = output_named(job, "hls-ts")
    master = fetch(hls.playback_url)
    assert master.headers["cache-control"] == "no-cache"
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    variant = next(line for line in master.text.splitlines() if line.endswith(".m3u8"))
    media = fetch(hls.playback_base_url + variant)
    assert media.status_code == 200 and media.headers["cache-control"] == "no-cache"
    segment = next(line for line in media.text.splitlines() if line.endswith(".ts"))
    folder = variant.rsplit("/", 1)[0] + "/" if "/" in variant else ""
    answer = fetch(hls.playback_base_url + folder + segment)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "video/mp2t"
    assert "immutable" in answer.headers["cache-control"]


def test_cross_origin_players_may_read_and_preflight(played):
    _, _, _, job = played
    url = output_named(job, "mp4").playback_url
    answer = fetch(url, origin="https://player.example", range="bytes=0-1")
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "Content-Range" in answer.headers["access-control-expose-headers"]
    preflight = plain_http.options(
        url,
        headers={
            "origin": "https://player.example",
            "access-control-request-method": "GET",
            "access-control-request-headers": "range",
        },
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "Range" in preflight.headers["access-control-allow-headers"]
    assert "GET" in preflight.headers["access-control-allow-methods"]


EXTENSIONS = {
    "m3u8": "application/vnd.apple.mpegurl",
    "mpd": "application/dash+xml",
    "m4s": "video/iso.segment",
    "ts": "video/mp2t",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "vtt": "text/vtt",
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "json": "application/json",
    "m4a": "audio/mp4",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "wav": "audio/wav",
}


def test_every_extension_kiln_writes_has_its_content_type(played):
    """Files of each kind are placed in the output's folder (as a worker's upload would)."""
    cluster, _, _, job = played
    output = output_named(job, "webm")
    folder = cluster.storage_dir / job.id / output.id
    for extension in EXTENSIONS:
        (folder / f"kind.{extension}").write_bytes(b"x")
    for extension, mime in EXTENSIONS.items():
        answer = fetch(f"{output.playback_base_url}kind.{extension}")
        assert answer.status_code == 200, extension
        assert answer.headers["content-type"].split(";")[0] == mime, extension


def test_a_folder_and_a_missing_file_are_404(played):
    _, _, _, job = played
    hls = output_named(job, "hls-ts")
    master = fetch(hls.playback_url).text
    variant_folder = next(line for line in master.splitlines() if line.endswith(".m3u8"))
    folder = variant_folder.rsplit("/", 1)[0]
    assert "/" in variant_folder, master
    assert fetch(hls.playback_base_url + folder).status_code == 404
    assert fetch(hls.playback_base_url + folder + "/").status_code == 403
    assert fetch(hls.playback_base_url + "missing.ts").status_code == 404


def raw_get(base_url: str, path: str) -> int:
    """The status of a GET whose request line carries `path` byte for byte."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_nothing_outside_the_output_folder_is_reachable(played):
    cluster, server, _, job = played
    mp4, webm = output_named(job, "mp4"), output_named(job, "webm")
    token = urlsplit(mp4.playback_url).path.split("/")[2]
    own = f"/play/{token}/{job.id}/{mp4.id}"
    assert raw_get(server.http_url, f"{own}/output.mp4") == 200
    escapes = [
        f"{own}/../{webm.id}/output.webm",
        f"{own}/%2e%2e/{webm.id}/output.webm",
        f"{own}/%2E%2E%2F{webm.id}%2Foutput.webm",
        f"{own}/..%2f{webm.id}%2foutput.webm",
        f"{own}/..%5c{webm.id}%5coutput.webm",
        f"{own}/..\\{webm.id}\\output.webm",
        f"{own}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/play/{token}/{job.id}/{mp4.id}/../../../../etc/passwd",
        # Output A's token on output B's folder, and on another job's.
        f"/play/{token}/{job.id}/{webm.id}/output.webm",
        f"/play/{token}/job_{'0' * 26}/{mp4.id}/output.mp4",
    ]
    for path in escapes:
        assert raw_get(server.http_url, path) in (403, 404), path
    # What reaches the server after the checks is the decisive part: none of these served.
    assert "Traceback" not in (cluster.root / "server-0.log").read_text()


def test_symlinks_planted_in_storage_lead_nowhere(played, tmp_path):
    cluster, _, _, job = played
    mp4, webm = output_named(job, "mp4"), output_named(job, "webm")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for players")
    folder = cluster.storage_dir / job.id / mp4.id
    (folder / "outside.mp4").symlink_to(secret)
    (folder / "neighbour.webm").symlink_to(cluster.storage_dir / job.id / webm.id / "output.webm")
    assert fetch(mp4.playback_base_url + "outside.mp4").status_code == 404
    assert fetch(mp4.playback_base_url + "neighbour.webm").status_code == 404


def test_expired_tampered_and_foreign_tokens_are_refused(played):
    _, _, _, job = played
    mp4, webm = output_named(job, "mp4"), output_named(job, "webm")
    # Signed with the server's own key, but long ago: only the expiry is wrong.
    signer = PlaybackTokens(
        SIGNING_KEY.encode(), ttl_seconds=60, clock=lambda: time.time() - 86_400
    )
    expired = signer.mint(job.id, mp4.id, job.attempt).text
    fresh = signer.mint(job.id, mp4.id, job.attempt).text
    token = urlsplit(mp4.playback_url).path.split("/")[2]
    base = mp4.playback_url.split("/play/")[0]
    assert fetch(f"{base}/play/{expired}/{job.id}/{mp4.id}/output.mp4").status_code == 403
    assert fresh == expired
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert fetch(f"{base}/play/{tampered}/{job.id}/{mp4.id}/output.mp4").status_code == 403
    webm_token = urlsplit(webm.playback_url).path.split("/")[2]
    assert fetch(f"{base}/play/{webm_token}/{job.id}/{mp4.id}/output.mp4").status_code == 403


def test_a_file_deleted_mid_response_is_served_whole_and_then_404(played):
    cluster, _server, _, job = played
    output = output_named(job, "webm")
    big = cluster.storage_dir / job.id / output.id / "big.mp4"
    content = os.urandom(8 * 1024 * 1024)
    big.write_bytes(content)
    received = bytearray()
    with plain_http.stream("GET", output.playback_base_url + "big.mp4", timeout=30) as answer:
        assert answer.status_code == 200
        chunks = answer.iter_bytes()
        received += next(chunks)
        # The server holds the file open once its first bytes arrived: delete it now.
        big.unlink()
        for chunk in chunks:
            received += chunk
    assert bytes(received) == content
    assert fetch(output.playback_base_url + "big.mp4").status_code == 404
    assert "Traceback" not in (cluster.root / "server-0.log").read_text()


def test_rotation_keeps_old_urls_while_the_old_key_is_listed(played):
    cluster, _, auth, job = played
    mp4 = output_named(job, "mp4")
    path = "/play/" + mp4.playback_url.split("/play/", 1)[1]
    rotated = cluster.start_server(
        KILN_SIGNING_KEY="a-new-key-fedcba9876543210", KILN_SIGNING_KEYS_PREVIOUS=SIGNING_KEY
    )
    assert fetch(rotated.http_url + path).status_code == 200
    new = rotated.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    new_url = output_named(new, "mp4").playback_url
    assert new_url != mp4.playback_url and fetch(new_url).status_code == 200
    retired = cluster.start_server(KILN_SIGNING_KEY="a-new-key-fedcba9876543210")
    assert fetch(retired.http_url + path).status_code == 403
    assert fetch(retired.http_url + "/play/" + new_url.split("/play/", 1)[1]).status_code == 200


def test_deleted_outputs_answer_404_at_their_old_url(played, media_root):
    _cluster, server, auth, _ = played
    created = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}")
    job = run_to_end(server, auth, created.id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    url = job.outputs[0].playback_url
    assert fetch(url).status_code == 200
    server.job_stub().DeleteOutputs(job_service_pb2.DeleteOutputsRequest(id=job.id), metadata=auth)
    assert fetch(url).status_code == 404
    again = server.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    assert fetch(again.outputs[0].playback_url or url).status_code == 404


def test_a_public_base_url_replaces_the_token_url(played):
    """With a CDN or public bucket in front of the storage, kiln hands out its URLs."""
    cluster, _, auth, job = played
    fronted = cluster.start_server(KILN_PUBLIC_BASE_URL="https://cdn.example.com/media/")
    got = fronted.job_stub().Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    mp4, hls = output_named(got, "mp4"), output_named(got, "hls-ts")
    assert mp4.playback_url == f"https://cdn.example.com/media/{job.id}/{mp4.id}/output.mp4"
    assert hls.playback_base_url == f"https://cdn.example.com/media/{job.id}/{hls.id}/"
    assert not mp4.HasField("playback_url_expire_time")
