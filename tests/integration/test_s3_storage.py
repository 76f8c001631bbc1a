"""S3Storage and the worker's grant transfers against a real SeaweedFS S3 server.

The server is the session's `seaweed_s3` (tests/support/seaweedfs.py): real SigV4 checks, real
identities (an admin, a read-only one, and keys it does not know), bucket auto-creation off.
"""

from __future__ import annotations

import re
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from common.storage.grants import TransferGrant, download_with_grants, upload_with_grants
from common.storage.local import UnsafeKey
from common.storage.s3 import S3Keys, S3Location, S3Storage
from common.storage.s3_errors import OriginUnusable, StorageRefused, StorageUnavailable
from common.storage.s3_location_rules import (
    check_bucket_name,
    check_endpoint_url,
    check_prefix,
    check_region,
)
from tests.support.processes import wait_until
from tests.support.seaweedfs import SeaweedS3

BUCKET = "kiln-s3-tests"
MiB = 1024 * 1024

HLS_TREE = {
    "master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv0/index.m3u8\n",
    "v0/index.m3u8": b"#EXTM3U\n#EXTINF:2.0,\nseg_000.ts\n",
    "v0/seg_000.ts": b"G" + bytes(range(256)) * 4,
    "v0/init.mp4": b"init",
    "v0/chunk_1.m4s": b"segment",
    "manifest.mpd": b"<MPD/>",
    "captions/en.vtt": b"WEBVTT\n",
    "thumbs/0001.jpg": b"\xff\xd8\xff",
    "odd.bin": b"?",
}
CONTENT_TYPES = {
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


@pytest.fixture(scope="module")
def server(seaweed_s3: SeaweedS3) -> SeaweedS3:
    seaweed_s3.make_bucket(BUCKET)
    return seaweed_s3


@pytest.fixture
def prefix() -> str:
    # A prefix per test: the session shares one server and this module one bucket.
    return f"origin-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3(server: SeaweedS3, prefix: str) -> S3Storage:
    return S3Storage(server.location(BUCKET, prefix), server.admin_keys)


@pytest.fixture
def raised(server: SeaweedS3) -> Iterator[list[BaseException]]:
    """Exceptions a test caught: after it, none may show any of the server's secrets or a
    presigned URL, in its message, its repr or its traceback as a log would print it."""
    caught: list[BaseException] = []
    yield caught
    assert caught, "the test was meant to catch at least one exception"
    for error in caught:
        assert_no_secrets(
            everything_said_about(error),
            server.admin_keys,
            server.readonly_keys,
            server.wrong_keys,
        )


def catch(
    caught: list[BaseException], kind: type[BaseException], call: Callable[[], object]
) -> BaseException:
    with pytest.raises(kind) as info:
        call()
    caught.append(info.value)
    return info.value


def everything_said_about(error: BaseException) -> str:
    """All text an error could put in a log: message, repr and the traceback as logged."""
    return "\n".join(
        [str(error), repr(error), *traceback.format_exception(error), *map(str, error.args)]
    )


def assert_no_secrets(text: str, *keys: S3Keys) -> None:
    for keys_used in keys:
        assert keys_used.secret_access_key not in text
    # Nothing of a presigned URL: neither its signature nor its credential scope.
    assert "X-Amz-Signature" not in text
    assert "X-Amz-Credential" not in text
    assert "Authorization" not in text


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def stored(server: SeaweedS3, name: str) -> tuple[bytes, str]:
    answer = server.client().get_object(Bucket=BUCKET, Key=name)
    return answer["Body"].read(), answer["ContentType"]


def names_under(server: SeaweedS3, folder: str) -> set[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=folder)
    return {entry["Key"] for page in pages for entry in page.get("Contents", ())}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Storage: uploads, listing, deletes, downloads.


def test_put_directory_uploads_nested_files_with_content_types(
    s3: S3Storage, server: SeaweedS3, prefix: str, tmp_path: Path
) -> None:
    source = write_tree(tmp_path / "out", HLS_TREE)

    s3.put_directory(source, "job1/out1")

    base = f"{prefix}/job1/out1"
    assert names_under(server, f"{base}/") == {f"{base}/{name}" for name in HLS_TREE}
    for name, content_type in CONTENT_TYPES.items():
        assert stored(server, f"{base}/{name}") == (HLS_TREE[name], content_type), name
    assert s3.exists("job1/out1/v0/seg_000.ts")
    assert not s3.exists("job1/out1/v0/seg_999.ts")


def test_put_directory_replaces_what_was_there(
    s3: S3Storage, server: SeaweedS3, prefix: str, tmp_path: Path
) -> None:
    s3.put_directory(write_tree(tmp_path / "first", HLS_TREE), "job1/out1")
    second = write_tree(tmp_path / "second", {"master.m3u8": b"#EXTM3U\n", "v1/seg.ts": b"new"})

    s3.put_directory(second, "job1/out1")

    assert s3.stored_sizes("job1/out1") == {"master.m3u8": 8, "v1/seg.ts": 3}
    assert stored(server, f"{prefix}/job1/out1/master.m3u8")[0] == b"#EXTM3U\n"


def test_put_directory_skips_symlinks(s3: S3Storage, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.txt"
    secret.write_bytes(b"not for the bucket")
    source = write_tree(tmp_path / "out", {"master.m3u8": b"#EXTM3U\n"})
    (source / "leak.txt").symlink_to(secret)
    (source / "linked_dir").symlink_to(tmp_path / "elsewhere_dir", target_is_directory=True)

    s3.put_directory(source, "job1/out1")

    assert s3.stored_sizes("job1/out1") == {"master.m3u8": 8}


def test_add_files_keeps_the_objects_already_there(s3: S3Storage, tmp_path: Path) -> None:
    s3.add_files(write_tree(tmp_path / "a", {"chunks/c0.mp4": b"zero"}), "job1/out1")
    s3.add_files(write_tree(tmp_path / "b", {"chunks/c1.mp4": b"one"}), "job1/out1")

    assert s3.stored_sizes("job1/out1") == {"chunks/c0.mp4": 4, "chunks/c1.mp4": 3}


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(s3: S3Storage, tmp_path: Path) -> None:
    # Past the multipart threshold (16 MiB), with a last part of an odd size.
    data = (bytes(range(256)) * 4096) * 20 + b"tail"
    write_tree(tmp_path / "out", {"video.mp4": data})

    s3.put_directory(tmp_path / "out", "job1/out1")
    s3.fetch_file("job1/out1/video.mp4", tmp_path / "back" / "video.mp4")

    assert s3.stored_sizes("job1/out1") == {"video.mp4": len(data)}
    assert (tmp_path / "back" / "video.mp4").read_bytes() == data


def test_stored_sizes_and_delete_prefix_keep_to_their_folder(
    s3: S3Storage, server: SeaweedS3, prefix: str, tmp_path: Path
) -> None:
    s3.put_directory(write_tree(tmp_path / "a", {"x.ts": b"1", "v0/y.ts": b"22"}), "job/out1")
    s3.put_directory(write_tree(tmp_path / "b", {"z.ts": b"333"}), "job/out10")

    assert s3.stored_sizes("job/out1") == {"x.ts": 1, "v0/y.ts": 2}
    assert s3.stored_sizes("job/out10") == {"z.ts": 3}
    assert s3.delete_prefix("job/out1") == 2
    assert s3.stored_sizes("job/out1") == {}
    assert names_under(server, f"{prefix}/job/") == {f"{prefix}/job/out10/z.ts"}
    assert s3.delete_prefix("job/out1") == 0


@pytest.mark.slow
def test_listing_and_deleting_go_past_one_page(s3: S3Storage, tmp_path: Path) -> None:
    # S3 lists and deletes at most 1,000 keys per request.
    files = {f"seg_{index:05d}.ts": b"s" for index in range(1005)}
    write_tree(tmp_path / "out", files)
    s3.put_directory(tmp_path / "out", "job/out1")

    assert s3.stored_sizes("job/out1") == dict.fromkeys(files, 1)
    assert s3.delete_prefix("job/out1") == 1005
    assert s3.stored_sizes("job/out1") == {}


def test_fetch_file_renames_a_whole_file_into_place(s3: S3Storage, tmp_path: Path) -> None:
    s3.put_directory(write_tree(tmp_path / "out", {"chunks/c0.mp4": b"chunk zero"}), "job/out1")
    target = tmp_path / "merge" / "deep" / "c0.mp4"

    s3.fetch_file("job/out1/chunks/c0.mp4", target)

    assert target.read_bytes() == b"chunk zero"
    assert sorted(p.name for p in target.parent.iterdir()) == ["c0.mp4"]


def test_fetch_file_of_a_missing_object_is_refused_and_leaves_nothing(
    s3: S3Storage, tmp_path: Path, raised: list[BaseException]
) -> None:
    target = tmp_path / "merge" / "c9.mp4"

    error = catch(raised, StorageRefused, lambda: s3.fetch_file("job/out1/c9.mp4", target))

    assert "NoSuchKey" in str(error)
    assert f"{BUCKET}" in str(error)
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    "key", ["../escape", "a/../b", "a//b", "./a", "a/.", "", "a?b", "a#b", "a\nb"]
)
def test_keys_that_alias_or_escape_are_refused(s3: S3Storage, key: str) -> None:
    with pytest.raises(UnsafeKey):
        s3.object_name(key)
    with pytest.raises(UnsafeKey):
        s3.presigned_get(key, 60)


# Presigned URLs.


def test_presigned_get_reads_the_object_until_it_expires(s3: S3Storage, tmp_path: Path) -> None:
    s3.put_directory(write_tree(tmp_path / "out", {"v0/seg.ts": b"segment bytes"}), "job/out1")
    before = datetime.now(UTC)

    # Two seconds: the signature is dated in whole seconds, so a one-second URL made late in
    # a second could expire before its first use.
    url, expires_at = s3.presigned_get("job/out1/v0/seg.ts", 2)
    first = requests.get(url, timeout=10)

    assert (first.status_code, first.content) == (200, b"segment bytes")
    assert before + timedelta(seconds=1) <= expires_at <= before + timedelta(seconds=2)
    # SigV4 expiry is counted in whole seconds from the signature's date: poll, never sleep.
    wait_until(lambda: requests.get(url, timeout=10).status_code == 403, timeout=10)
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403
    assert b"expired" in expired.content.lower()


def test_presigned_put_writes_exactly_its_key_with_its_content_type(
    s3: S3Storage, server: SeaweedS3, prefix: str
) -> None:
    url, headers, expires_at = s3.presigned_put("job/out1/v0/seg_1.ts", 600, "video/mp2t")

    assert headers == {"Content-Type": "video/mp2t"}
    assert expires_at > datetime.now(UTC) + timedelta(seconds=590)
    assert requests.put(url, data=b"ts bytes", headers=headers, timeout=10).status_code == 200
    assert stored(server, f"{prefix}/job/out1/v0/seg_1.ts") == (b"ts bytes", "video/mp2t")

    # The same signature on another path, or with another content type, is refused.
    parts = urlsplit(url)
    other = urlunsplit(parts._replace(path=parts.path.replace("seg_1.ts", "seg_2.ts")))
    assert requests.put(other, data=b"evil", headers=headers, timeout=10).status_code == 403
    assert not s3.exists("job/out1/v0/seg_2.ts")
    relabelled = {"Content-Type": "text/html"}
    assert requests.put(url, data=b"<script>", headers=relabelled, timeout=10).status_code == 403
    assert stored(server, f"{prefix}/job/out1/v0/seg_1.ts")[0] == b"ts bytes"


@pytest.mark.parametrize("ttl", [0, -1, 7 * 24 * 3600 + 1])
def test_presigned_urls_refuse_lifetimes_s3_cannot_sign(s3: S3Storage, ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        s3.presigned_get("job/a.ts", ttl)
    with pytest.raises(ValueError, match="ttl_seconds"):
        s3.presigned_put("job/a.ts", ttl, "video/mp2t")


def test_presigned_put_refuses_a_content_type_that_would_inject_headers(s3: S3Storage) -> None:
    with pytest.raises(ValueError, match="content_type"):
        s3.presigned_put("job/a.ts", 60, "video/mp2t\r\nX-Amz-Acl: public-read")


# Relayed playback.


def test_open_media_passes_range_and_validators_through(
    s3: S3Storage, server: SeaweedS3, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 64
    s3.put_directory(write_tree(tmp_path / "out", {"video.mp4": data}), "job/out1")
    mark = server.log_mark()

    with s3.open_media("job/out1/video.mp4", {"Range": "bytes=1000-1999"}) as ranged:
        assert ranged.status_code == 206
        assert ranged.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        assert ranged.content == data[1000:2000]
        etag = ranged.headers["ETag"]
    with s3.open_media("job/out1/video.mp4", {"If-None-Match": etag}) as unchanged:
        assert unchanged.status_code == 304
    with s3.open_media("job/out1/video.mp4", {}) as whole:
        assert (whole.status_code, whole.content) == (200, data)

    # The server's request log is how a test sees a client read part of an object in place.
    # A request's line is written as its handler returns, which may be after the client has
    # its answer: poll the log for it.
    def logged() -> list[tuple[str, int]]:
        accesses = server.access_log(mark)
        return [(a.method, a.status) for a in accesses if a.path.endswith("/out1/video.mp4")]

    wait_until(lambda: len(logged()) >= 3, timeout=10)
    assert logged() == [("GET", 206), ("GET", 304), ("GET", 200)]
    assert server.served_ranges(mark) == [(1000, 1000)]


def test_open_media_of_a_missing_object_answers_404(s3: S3Storage) -> None:
    with s3.open_media("job/out1/none.mp4", {}) as missing:
        assert missing.status_code == 404


# The probe: can these keys use this bucket?


def test_probe_passes_with_full_access_and_leaves_nothing(
    s3: S3Storage, server: SeaweedS3, prefix: str
) -> None:
    s3.probe()

    assert names_under(server, f"{prefix}/") == set()


def test_probe_with_read_only_keys_cannot_write(
    server: SeaweedS3, prefix: str, raised: list[BaseException]
) -> None:
    s3 = S3Storage(server.location(BUCKET, prefix), server.readonly_keys)

    error = catch(raised, OriginUnusable, s3.probe)

    assert str(error) == f"cannot write to bucket {BUCKET}: AccessDenied"
    assert_no_secrets(everything_said_about(error), server.readonly_keys)


def test_wrong_keys_are_refused_without_the_secret_in_any_message(
    server: SeaweedS3, prefix: str, tmp_path: Path, raised: list[BaseException]
) -> None:
    unknown = S3Storage(server.location(BUCKET, prefix), server.wrong_keys)
    wrong_secret_keys = S3Keys(server.admin_keys.access_key_id, "not-the-secret-0123456789")
    wrong_secret = S3Storage(server.location(BUCKET, prefix), wrong_secret_keys)
    source = write_tree(tmp_path / "out", {"a.ts": b"a"})

    probed = catch(raised, OriginUnusable, unknown.probe)
    uploaded = catch(raised, StorageRefused, lambda: unknown.put_directory(source, "job/out1"))
    listed = catch(raised, StorageRefused, lambda: unknown.stored_sizes("job/out1"))
    signed_wrong = catch(raised, OriginUnusable, wrong_secret.probe)

    assert str(probed) == f"cannot write to bucket {BUCKET}: InvalidAccessKeyId"
    assert "InvalidAccessKeyId (403)" in str(uploaded)
    assert "job/out1/a.ts" in str(uploaded)
    assert "InvalidAccessKeyId (403)" in str(listed)
    assert str(signed_wrong) == f"cannot write to bucket {BUCKET}: SignatureDoesNotMatch"
    for error in raised:
        assert_no_secrets(everything_said_about(error), server.wrong_keys, wrong_secret_keys)


def test_probe_of_a_missing_bucket_says_so(server: SeaweedS3, raised: list[BaseException]) -> None:
    s3 = S3Storage(server.location("kiln-no-such-bucket", "x"), server.admin_keys)

    error = catch(raised, OriginUnusable, s3.probe)

    assert str(error) == "bucket kiln-no-such-bucket does not exist (NoSuchBucket)"


def test_an_endpoint_nobody_listens_on_fails_fast(
    server: SeaweedS3, tmp_path: Path, raised: list[BaseException]
) -> None:
    port = closed_port()
    location = S3Location(f"http://127.0.0.1:{port}", "us-east-1", BUCKET, "x", True)
    s3 = S3Storage(location, server.admin_keys)
    source = write_tree(tmp_path / "out", {"a.ts": b"a"})
    started = time.monotonic()

    probed = catch(raised, OriginUnusable, s3.probe)
    uploaded = catch(raised, StorageUnavailable, lambda: s3.put_directory(source, "job/out1"))

    assert time.monotonic() - started < 10
    assert str(probed) == f"cannot reach http://127.0.0.1:{port}: connection refused"
    assert f"cannot reach http://127.0.0.1:{port}: connection refused" in str(uploaded)


@pytest.mark.slow
def test_an_endpoint_that_never_accepts_fails_the_probe_within_its_connect_timeout(
    server: SeaweedS3, raised: list[BaseException]
) -> None:
    # A listening socket whose one-slot accept queue is already full: the kernel drops
    # further SYNs, which is what a firewalled host looks like.
    with socket.socket() as silent, socket.socket() as filler:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        port = silent.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        location = S3Location(f"http://127.0.0.1:{port}", "us-east-1", BUCKET, "x", True)
        s3 = S3Storage(location, server.admin_keys)
        started = time.monotonic()

        error = catch(raised, OriginUnusable, s3.probe)

        assert time.monotonic() - started < 10
    assert str(error) == f"cannot reach http://127.0.0.1:{port}: connection timed out"


def test_reprs_never_show_the_secret(server: SeaweedS3, s3: S3Storage) -> None:
    keys = server.admin_keys
    grant = TransferGrant("v0/a.ts", "PUT", s3.presigned_put("a.ts", 60, "video/mp2t")[0])

    for shown in (repr(keys), str(keys), repr(s3), repr(server.location(BUCKET)), repr(grant)):
        assert_no_secrets(shown, keys)
    assert "X-Amz" not in repr(grant)


# Grants: the worker's side, with URLs only.


def grants_for(s3: S3Storage, source: Path, key_prefix: str) -> list[tuple[Path, TransferGrant]]:
    files = sorted(path for path in source.rglob("*") if path.is_file())
    grants = []
    for path in files:
        relative = path.relative_to(source).as_posix()
        url, headers, _ = s3.presigned_put(
            f"{key_prefix}/{relative}", 600, CONTENT_TYPES.get(relative, "video/mp2t")
        )
        grants.append((path, TransferGrant(relative, "PUT", url, headers)))
    return grants


def test_upload_with_grants_stores_every_file_with_its_type(
    s3: S3Storage, server: SeaweedS3, prefix: str, tmp_path: Path
) -> None:
    tree = {**HLS_TREE, "empty.vtt": b"", "big.mp4": bytes(range(256)) * 40_000}
    source = write_tree(tmp_path / "out", tree)

    upload_with_grants(grants_for(s3, source, "job/out1"), concurrency=4)

    assert s3.stored_sizes("job/out1") == {name: len(data) for name, data in tree.items()}
    for name, content_type in CONTENT_TYPES.items():
        assert stored(server, f"{prefix}/job/out1/{name}") == (tree[name], content_type)


def test_download_with_grants_renames_whole_files_into_place(s3: S3Storage, tmp_path: Path) -> None:
    s3.put_directory(write_tree(tmp_path / "out", HLS_TREE), "job/out1")
    grants = [
        (
            TransferGrant(name, "GET", s3.presigned_get(f"job/out1/{name}", 600)[0], {}),
            tmp_path / "back" / name,
        )
        for name in HLS_TREE
    ]

    download_with_grants(grants, concurrency=4)

    for name, data in HLS_TREE.items():
        assert (tmp_path / "back" / name).read_bytes() == data
    assert not list((tmp_path / "back").rglob("*.part"))


def test_a_grant_moved_to_another_key_is_refused_without_its_url(
    s3: S3Storage, server: SeaweedS3, tmp_path: Path, raised: list[BaseException]
) -> None:
    source = write_tree(tmp_path / "out", {"v0/seg_1.ts": b"one"})
    [(path, grant)] = grants_for(s3, source, "job/out1")
    parts = urlsplit(grant.url)
    moved = TransferGrant(
        grant.path,
        grant.method,
        urlunsplit(parts._replace(path=parts.path.replace("seg_1", "seg_2"))),
        grant.headers,
    )

    error = catch(raised, StorageRefused, lambda: upload_with_grants([(path, moved)]))

    assert str(error) == (
        f"upload of v0/seg_1.ts to {server.endpoint_url}: SignatureDoesNotMatch (HTTP 403)"
    )
    assert_no_secrets(everything_said_about(error), server.admin_keys)
    assert not s3.exists("job/out1/v0/seg_2.ts")


def test_a_refused_download_leaves_no_partial_file(
    s3: S3Storage, tmp_path: Path, raised: list[BaseException]
) -> None:
    url, _ = s3.presigned_get("job/out1/none.ts", 600)
    target = tmp_path / "back" / "none.ts"

    error = catch(
        raised,
        StorageRefused,
        lambda: download_with_grants([(TransferGrant("none.ts", "GET", url, {}), target)]),
    )

    assert "NoSuchKey (HTTP 404)" in str(error)
    assert list(target.parent.iterdir()) == []


def test_grants_to_an_unreachable_store_fail_as_unavailable(
    tmp_path: Path, raised: list[BaseException]
) -> None:
    port = closed_port()
    source = write_tree(tmp_path / "out", {"a.ts": b"a"})
    url = f"http://127.0.0.1:{port}/bucket/a.ts?X-Amz-Signature=feedface"
    grant = TransferGrant("a.ts", "PUT", url, {"Content-Type": "video/mp2t"})

    error = catch(
        raised, StorageUnavailable, lambda: upload_with_grants([(source / "a.ts", grant)])
    )

    assert str(error) == f"upload of a.ts: cannot reach http://127.0.0.1:{port}: connection refused"
    assert "feedface" not in everything_said_about(error)


@pytest.mark.slow
def test_grants_survive_a_store_restart_and_storage_reports_its_absence(
    s3: S3Storage, server: SeaweedS3, tmp_path: Path, raised: list[BaseException]
) -> None:
    source = write_tree(tmp_path / "out", {"v0/seg_1.ts": b"one", "v0/seg_2.ts": b"two"})
    grants = grants_for(s3, source, "job/out1")
    server.stop()
    try:
        down = catch(raised, StorageUnavailable, lambda: upload_with_grants(grants, attempts=1))
        listed = catch(raised, StorageUnavailable, lambda: s3.stored_sizes("job/out1"))
    finally:
        server.start()

    upload_with_grants(grants)

    assert "connection refused" in str(down)
    assert "connection refused" in str(listed)
    assert s3.stored_sizes("job/out1") == {"v0/seg_1.ts": 3, "v0/seg_2.ts": 3}


def test_grants_for_the_wrong_direction_are_refused_before_any_request(tmp_path: Path) -> None:
    path = write_tree(tmp_path, {"a.ts": b"a"}) / "a.ts"
    with pytest.raises(ValueError, match="not an upload"):
        upload_with_grants([(path, TransferGrant("a.ts", "GET", "http://x/a", {}))])
    with pytest.raises(ValueError, match="not a download"):
        download_with_grants([(TransferGrant("a.ts", "PUT", "http://x/a", {}), path)])
    with pytest.raises(ValueError, match="no http"):
        upload_with_grants([(path, TransferGrant("a.ts", "PUT", "file:///etc/passwd", {}))])


# What the API layer checks before an origin is saved.


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ab", "3-63 characters"),
        ("a" * 64, "3-63 characters"),
        ("Renditions", "lowercase"),
        ("my_bucket", "lowercase"),
        ("-bucket", "starts and ends"),
        ("bucket-", "starts and ends"),
        ("my..bucket", "two periods"),
        ("192.168.5.4", "IP address"),
        ("xn--bucket", "reserves"),
        ("bucket-s3alias", "reserves"),
    ],
)
def test_check_bucket_name_refuses(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_bucket_name(name)


@pytest.mark.parametrize("name", ["abc", "renditions", "my.bucket-01", "a" * 63, "1.2.3"])
def test_check_bucket_name_accepts(name: str) -> None:
    check_bucket_name(name)


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("/videos", "leading '/'"),
        ("videos/", "trailing '/'"),
        ("a//b", "empty"),
        ("a/./b", "'.'"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("a\x00b", "cannot contain"),
        ("a\nb", "cannot contain"),
        ("a\x7fb", "cannot contain"),
        ("a?b", "cannot contain"),
        ("a#b", "cannot contain"),
        ("a\\b", "cannot contain"),
        ("é" * 257, "512 bytes"),
    ],
)
def test_check_prefix_refuses(prefix: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_prefix(prefix)


@pytest.mark.parametrize("prefix", ["", "videos", "org-1/outputs", "a b/ünïcode", "x" * 512])
def test_check_prefix_accepts(prefix: str) -> None:
    check_prefix(prefix)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://s3.example.com", "http:// or https://"),
        ("s3.example.com", "http:// or https://"),
        ("https://", "names a host"),
        ("https://user:pass@s3.example.com", "no user"),
        ("https://key@s3.example.com", "no user"),
        ("https://s3.example.com/?x=1", "no query"),
        ("https://s3.example.com/#top", "no query"),
        ("https://s3.example.com\x00.evil", "control"),
        ("https://s3.example.com /x", "spaces"),
        ("https://s3.example.com:99999", "port"),
        ("https://s3.example.com:0", "port"),
        ("https://s3.example.com:http", "port"),
    ],
)
def test_check_endpoint_url_refuses(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_endpoint_url(url)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://s3.example.com/", "https://s3.example.com"),
        ("HTTPS://S3.Example.COM:9000//", "https://s3.example.com:9000"),
        ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
        ("https://[::1]:9000/", "https://[::1]:9000"),
        ("https://gateway.example.com/s3/", "https://gateway.example.com/s3"),
    ],
)
def test_check_endpoint_url_normalises(url: str, normalised: str) -> None:
    assert check_endpoint_url(url) == normalised


@pytest.mark.parametrize("region", ["", "US-EAST-1", "eu_west_1", "r" * 33, "auto\n"])
def test_check_region_refuses(region: str) -> None:
    with pytest.raises(ValueError, match="region"):
        check_region(region)


@pytest.mark.parametrize("region", ["us-east-1", "auto", "eu-central-003"])
def test_check_region_accepts(region: str) -> None:
    check_region(region)


def test_storage_refuses_a_location_that_fails_the_checks(server: SeaweedS3) -> None:
    keys = server.admin_keys
    with pytest.raises(ValueError, match="lowercase"):
        S3Storage(server.location("Bad_Bucket"), keys)
    with pytest.raises(ValueError, match=re.escape("'..'")):
        S3Storage(server.location(BUCKET, "a/../b"), keys)
    with pytest.raises(ValueError, match="no user"):
        S3Storage(S3Location("https://k:s@h", "us-east-1", BUCKET, "", True), keys)
    with pytest.raises(ValueError, match="region"):
        S3Storage(S3Location("", "Nowhere", BUCKET, "", False), keys)
