"""Signed download URLs and the local storage's refusal of keys that leave its root."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from common.storage.local import LocalStorage, UnsafeKey
from common.storage.signing import UrlSigner

BASE = "https://kiln.example.com/"


def parse(url: str) -> tuple[str, str, str]:
    """(key, expires, sig) as the /files/ route reads them."""
    parts = urlsplit(url)
    assert parts.path.startswith("/files/")
    query = parse_qs(parts.query)
    return unquote(parts.path.removeprefix("/files/")), query["expires"][0], query["sig"][0]


@pytest.fixture
def signer() -> UrlSigner:
    return UrlSigner(b"secret-one", BASE, ttl_seconds=3600)


def test_sign_then_verify_round_trip(signer):
    before = int(time.time())
    url, expires_at = signer.sign("job_1", "out_2", "video/master 1.mp4")
    assert url.startswith("https://kiln.example.com/files/")  # trailing slash not doubled
    key, expires, signature = parse(url)
    assert key == "job_1/out_2/video/master 1.mp4"
    assert before + 3600 <= int(expires) <= int(time.time()) + 3600
    assert expires_at == datetime.fromtimestamp(int(expires), UTC)
    assert signer.verify(key, expires, signature)


def test_tampered_key_refused(signer):
    key, expires, signature = parse(signer.sign("job_1", "out_2", "a.mp4")[0])
    assert not signer.verify("job_1/out_3/a.mp4", expires, signature)
    assert not signer.verify(key + "x", expires, signature)


def test_tampered_expiry_refused(signer):
    key, expires, signature = parse(signer.sign("job_1", "out_2", "a.mp4")[0])
    assert not signer.verify(key, str(int(expires) + 86400), signature)
    assert not signer.verify(key, "", signature)
    assert not signer.verify(key, "-1", signature)
    assert not signer.verify(key, "1e12", signature)


def test_tampered_signature_refused(signer):
    key, expires, signature = parse(signer.sign("job_1", "out_2", "a.mp4")[0])
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert not signer.verify(key, expires, flipped)
    assert not signer.verify(key, expires, "")
    assert not signer.verify(key, expires, signature.upper())


def test_signature_from_another_secret_refused(signer):
    other = UrlSigner(b"secret-two", BASE, ttl_seconds=3600)
    key, expires, signature = parse(other.sign("job_1", "out_2", "a.mp4")[0])
    assert other.verify(key, expires, signature)
    assert not signer.verify(key, expires, signature)


def test_expired_url_refused(signer):
    # A negative TTL yields a correctly signed URL that expired a minute ago.
    stale = UrlSigner(b"secret-one", BASE, ttl_seconds=-60)
    key, expires, signature = parse(stale.sign("job_1", "out_2", "a.mp4")[0])
    assert int(expires) < time.time()
    assert not signer.verify(key, expires, signature)


@pytest.mark.parametrize("expires", ["\u00b2", "1\u00b2"], ids=["sup2", "1sup2"])
def test_non_ascii_digit_expiry_is_refused_not_raised(signer, expires):
    # str.isdigit() accepts superscripts that int() cannot parse.
    key, _, signature = parse(signer.sign("job_1", "out_2", "a.mp4")[0])
    assert signer.verify(key, expires, signature) is False


def test_non_ascii_signature_is_refused_not_raised(signer):
    # hmac.compare_digest raises TypeError on non-ASCII str arguments.
    key, expires, _ = parse(signer.sign("job_1", "out_2", "a.mp4")[0])
    assert signer.verify(key, expires, "\u00e9" * 64) is False


# -- LocalStorage ---------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    (tmp_path / "outputs").mkdir()
    return LocalStorage(tmp_path / "outputs")


def test_path_for_a_normal_key(storage):
    path = storage.path_for("job_1/out_2/video.mp4")
    assert path == storage.root / "job_1" / "out_2" / "video.mp4"


@pytest.mark.parametrize(
    "key",
    [
        "../secret",
        "job_1/../../secret",
        "job_1/out_2/../../../etc/passwd",
        "..",
        "",
        ".",
        "job_1/..",
    ],
)
def test_path_for_refuses_escapes(storage, key):
    with pytest.raises(UnsafeKey):
        storage.path_for(key)


@pytest.mark.parametrize("key", ["/etc/passwd", "/tmp/x", "//etc/passwd"])
def test_path_for_refuses_absolute_keys(storage, key):
    with pytest.raises(UnsafeKey):
        storage.path_for(key)


def test_path_for_refuses_sibling_with_common_prefix(storage):
    sibling = storage.root.parent / (storage.root.name + "-evil")
    sibling.mkdir()
    with pytest.raises(UnsafeKey):
        storage.path_for(f"../{sibling.name}/x")


def test_path_for_refuses_symlink_out_of_root(storage, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (storage.root / "job_1").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafeKey):
        storage.path_for("job_1/out_2/a.mp4")


def test_inner_dotdot_that_stays_inside_is_fine(storage):
    assert storage.path_for("job_1/x/../out_2/a.mp4") == storage.root / "job_1/out_2/a.mp4"


def test_put_directory_and_delete_prefix(storage, tmp_path):
    source = tmp_path / "work"
    (source / "seg").mkdir(parents=True)
    (source / "a.mp4").write_bytes(b"a")
    (source / "seg" / "b.ts").write_bytes(b"b")
    storage.put_directory(source, "job_1/out_2")
    assert (storage.root / "job_1/out_2/seg/b.ts").read_bytes() == b"b"
    assert not source.exists()
    assert storage.delete_prefix("job_1/out_2") == 2
    assert not (storage.root / "job_1/out_2").exists()
    assert storage.delete_prefix("job_1/out_2") == 0
    with pytest.raises(UnsafeKey):
        storage.delete_prefix("..")


def test_output_job_ids_finds_jobs_whose_storage_an_input_names(tmp_path):
    from common.storage.origins import Origins

    job = "job_01m8409tydwnp24y56db6khqne"
    origins = Origins(LocalStorage(tmp_path / "storage"), allowed_buckets=["renditions"])
    (tmp_path / "storage" / job / "out_x").mkdir(parents=True)
    assert origins.output_job_ids(f"gs://renditions/any/prefix/{job}/out_x/a.mp4") == {job}
    assert origins.output_job_ids(f"gs://uploads/{job}/a.mp4") == set()
    assert origins.output_job_ids(f"file://{tmp_path}/storage/{job}/out_x/a.mp4") == {job}
    # `..` is resolved before deciding: a path that leaves storage names no job.
    assert origins.output_job_ids(f"file://{tmp_path}/storage/../{job}.mp4") == set()
    assert origins.output_job_ids(f"https://cdn.example.com/{job}/a.mp4") == set()


def test_urls_are_never_signed_outside_the_outputs_prefix(tmp_path):
    from common.storage.origins import Origins

    signer = UrlSigner(b"secret", "http://kiln.test", 60)
    origins = Origins(LocalStorage(tmp_path), signer)
    url, _ = origins.url("", "job_a", "out_a", "v0/seg_001.m4s")
    assert "/files/job_a/out_a/v0/seg_001.m4s?" in url
    for path in ("../../job_b/out_b/output.mp4", "/etc/passwd", "a//b", "./x", "a\\b", ""):
        with pytest.raises(ValueError):
            origins.url("", "job_a", "out_a", path)
