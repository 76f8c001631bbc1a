"""Google Cloud Storage: outputs under gs://{bucket}/{prefix}/{key}, gs:// inputs staged locally.

Keys use the same layout as LocalStorage ({job_id}/{output_id}/{path}) and the same replace
semantics, so the worker and the download routes can treat both backends alike. Every call
here blocks on HTTP: async callers run them with `asyncio.to_thread` (download_to does so).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

import requests

from common.storage.local import UnsafeKey
from common.storage.media_types import mime_type_for

if TYPE_CHECKING:
    from google.cloud import storage

# Google's storage library (with google-auth and cryptography) is imported where a client is
# made or its errors are caught, not with this module: every server and worker imports this
# module, most never talk to GCS, and the import cost about 0.2 s of CPU per process start.

GS_SCHEME = "gs://"

# GCS rules: 3-63 characters (up to 222 when dotted, each dot-separated part at most 63),
# lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
_BUCKET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
_MAX_BUCKET_LENGTH = 222
_MAX_BUCKET_PART_LENGTH = 63
_MAX_OBJECT_NAME_BYTES = 1024
# Control characters are legal in GCS names but never intended, and CR/LF are refused by GCS.
# '?' and '#' are legal too, but the input policy parses URLs with urlsplit, which would cut
# the name there: refusing them keeps "the object we checked" and "the object we read" equal.
_FORBIDDEN_IN_OBJECT_NAME = re.compile(r"[\x00-\x1f\x7f?#]")

# Connecting to GCS, and waiting for each part of a relayed object's body.
MEDIA_TIMEOUT_SECONDS = (10.0, 60.0)

# V4 signatures cannot outlive seven days.
MAX_SIGNED_URL_TTL_SECONDS = 7 * 24 * 3600

# The library sends files up to 8 MiB in one multipart request and larger ones as a resumable
# session; chunk_size is the size of each PUT in that session. Smaller chunks bound the memory
# an upload holds and the bytes re-sent after a dropped connection; GCS wants multiples of
# 256 KiB.
_CHUNK_QUANTUM = 256 * 1024
DEFAULT_UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024
# HLS/DASH outputs are hundreds of small segments: one request at a time spends the upload
# waiting on round trips. requests keeps 10 connections per host, so stay below that.
DEFAULT_TRANSFER_CONCURRENCY = 8


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def parse_gs_url(url: str) -> tuple[str, str]:
    """Split gs://bucket/object into (bucket, object name); ValueError says what is wrong.

    The object name is taken literally, as gsutil/gcloud do: no percent-decoding.
    """
    if not url.lower().startswith(GS_SCHEME):
        raise ValueError(f"not a gs:// URL: {url!r}")
    rest = url[len(GS_SCHEME) :]
    bucket, slash, object_name = rest.partition("/")
    if not bucket:
        raise ValueError(f"gs:// URL has no bucket: {url!r}")
    _check_bucket_name(bucket)
    if not slash or not object_name:
        raise ValueError(f"gs:// URL names no object after the bucket: {url!r}")
    if object_name in (".", ".."):
        raise ValueError(f"GCS object names cannot be '.' or '..': {url!r}")
    if len(object_name.encode()) > _MAX_OBJECT_NAME_BYTES:
        raise ValueError(f"GCS object names are at most {_MAX_OBJECT_NAME_BYTES} bytes")
    if bad := _FORBIDDEN_IN_OBJECT_NAME.search(object_name):
        raise ValueError(
            f"gs:// object name contains {bad.group()!r}, which kiln does not accept: {url!r}"
        )
    return bucket, object_name


def _check_bucket_name(bucket: str) -> None:
    parts = bucket.split(".")
    too_long = len(bucket) > _MAX_BUCKET_LENGTH or any(
        len(part) > _MAX_BUCKET_PART_LENGTH for part in parts
    )
    if len(bucket) < 3 or too_long or not _BUCKET_NAME.fullmatch(bucket) or "" in parts:
        raise ValueError(
            f"invalid GCS bucket name {bucket!r}: 3-63 characters of lowercase letters, "
            "digits, '-', '_' and '.', starting and ending with a letter or digit"
        )


def _check_key(key: str) -> None:
    """Keys are relative slash paths; refuse what would alias or escape another key.

    GCS has no directories, so '..' escapes nothing in the bucket, but HTTP clients and
    proxies normalise dot segments in URLs, which would make a signed URL name another
    object; empty segments would make 'a//b' and 'a/b' different objects for the same path.
    """
    segments = key.split("/")
    if not key or any(segment in ("", ".", "..") for segment in segments):
        raise UnsafeKey(key)
    if _FORBIDDEN_IN_OBJECT_NAME.search(key):
        raise UnsafeKey(key)


def client_from_environment(project: str = "kiln") -> storage.Client:
    """A client for the emulator when STORAGE_EMULATOR_HOST is set, else default credentials.

    `project` matters only to bucket-level calls (create, list); object reads and writes
    bill to the bucket's own project.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        # The library expects a scheme in this variable despite its name.
        endpoint = emulator if "://" in emulator else f"http://{emulator}"
        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    return storage.Client(project=project)


class GcsStorage:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: storage.Client,
        *,
        upload_chunk_bytes: int = DEFAULT_UPLOAD_CHUNK_BYTES,
        transfer_concurrency: int = DEFAULT_TRANSFER_CONCURRENCY,
    ) -> None:
        _check_bucket_name(bucket)
        self.prefix = prefix.strip("/")
        if self.prefix:
            _check_key(self.prefix)
        if upload_chunk_bytes <= 0 or upload_chunk_bytes % _CHUNK_QUANTUM:
            raise ValueError(f"upload_chunk_bytes must be a positive multiple of {_CHUNK_QUANTUM}")
        self.client = client
        self.bucket = client.bucket(bucket)
        self.upload_chunk_bytes = upload_chunk_bytes
        self.transfer_concurrency = max(transfer_concurrency, 1)

    def object_name(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_directory(self, source: Path, key_prefix: str) -> None:
        """Upload every file of `source` under `key_prefix`, replacing what was there.

        New files are written first and stale ones deleted afterwards, rather than emptying
        the prefix first: an object overwrite is atomic in GCS, so readers of a re-run output
        never see a prefix with the playlist gone, and a failed upload leaves the previous
        files in place instead of none.
        """
        target = self.object_name(key_prefix)
        uploads: list[tuple[Path, str]] = [
            (path, f"{target}/{path.relative_to(source).as_posix()}")
            for path in sorted(source.rglob("*"))
            # Only regular files: a symlink in a scratch directory could point anywhere on
            # the worker's disk, and uploading its target would publish that file.
            if path.is_file() and not path.is_symlink()
        ]
        for _, name in uploads:
            _check_key(name)
        self._in_parallel(self._upload_file, uploads)

        fresh = {name for _, name in uploads}
        stale = [blob for blob in self._list(target) if blob.name not in fresh]
        self._in_parallel(self._delete_blob, stale)

    def add_files(self, source: Path, key_prefix: str) -> None:
        """Upload every file of `source` under `key_prefix`, keeping the objects already
        there (chunks of one output arrive from several workers into the same folders)."""
        target = self.object_name(key_prefix)
        uploads: list[tuple[Path, str]] = [
            (path, f"{target}/{path.relative_to(source).as_posix()}")
            for path in sorted(source.rglob("*"))
            if path.is_file() and not path.is_symlink()
        ]
        for _, name in uploads:
            _check_key(name)
        self._in_parallel(self._upload_file, uploads)

    def fetch_file(self, key: str, target: Path) -> None:
        """Download the stored object `key` to `target` (a merge reads the chunks back)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        self.bucket.blob(self.object_name(key)).download_to_filename(str(target))

    def delete_files(self, key_prefix: str, paths: Sequence[str]) -> int:
        """Delete the named objects under `key_prefix`; the number actually deleted."""
        target = self.object_name(key_prefix)
        blobs = [self.bucket.blob(f"{target}/{path}") for path in paths]
        return sum(self._in_parallel(self._delete_blob, blobs))

    def delete_prefix(self, key_prefix: str) -> int:
        """Delete every object under `key_prefix`; the number actually deleted."""
        deleted = self._in_parallel(self._delete_blob, self._list(self.object_name(key_prefix)))
        return sum(deleted)

    def stored_sizes(self, key_prefix: str) -> dict[str, int]:
        """Size of every object under `key_prefix`, by its name relative to the prefix (one
        listing, not a request per file)."""
        name = self.object_name(key_prefix).rstrip("/")
        base = name + "/"
        return {
            blob.name[len(base) :]: int(blob.size or 0)
            for blob in self._list(name)
            if blob.name.startswith(base)
        }

    def open_media(self, key: str, headers: dict[str, str]) -> requests.Response:
        """Start reading the stored object `key` with the caller's Range and validators
        passed through (GCS answers 200, 206, 304 or 416 itself); the body streams."""
        endpoint = self.client.api_endpoint.rstrip("/")
        url = (
            f"{endpoint}/download/storage/v1/b/{quote(self.bucket.name, safe='')}/o/"
            f"{quote(self.object_name(key), safe='')}?alt=media"
        )
        # The client's authorized session (the library has no public accessor for it): it
        # carries the server's credentials and refreshes them, as the library's own
        # downloads do.
        session = self.client._http
        return session.request(
            "GET", url, headers=headers, stream=True, timeout=MEDIA_TIMEOUT_SECONDS
        )

    def exists(self, key: str) -> bool:
        return self.bucket.blob(self.object_name(key)).exists()

    def signed_url(self, key: str, ttl_seconds: int) -> tuple[str, datetime]:
        """A GET URL for `key` and the moment it stops working.

        With signing credentials (a service-account key) this is a V4 signed URL. Anonymous
        credentials, which is what the emulator runs with, hold no private key, so nothing
        can be signed; the emulator does not check signatures anyway, serves path-style
        (signed-URL-shaped) downloads only under the Host storage.googleapis.com, and serves
        its media download URL to anyone. That URL is returned instead: it does not expire
        (the returned expiry is what a signed URL would have had), and against real GCS it
        works only for a publicly readable bucket.
        """
        if not 0 < ttl_seconds <= MAX_SIGNED_URL_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be 1..{MAX_SIGNED_URL_TTL_SECONDS}")
        name = self.object_name(key)
        # Taken before signing and rounded down, so the reported expiry is never later than the
        # URL's own (the library dates the signature a moment after this).
        expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl_seconds)
        # The library has no public accessor; generate_signed_url reads the same attribute.
        from google.auth.credentials import AnonymousCredentials, Signing

        credentials = self.client._credentials
        if isinstance(credentials, AnonymousCredentials):
            endpoint = self.client.api_endpoint.rstrip("/")
            url = (
                f"{endpoint}/download/storage/v1/b/{self.bucket.name}/o/"
                f"{quote(name, safe='')}?alt=media"
            )
            return url, expires_at
        if isinstance(credentials, Signing):
            url = self.bucket.blob(name).generate_signed_url(
                version="v4", expiration=timedelta(seconds=ttl_seconds), method="GET"
            )
            return url, expires_at
        # Token-only credentials (GCE metadata, workload identity) can sign only through the
        # IAM signBlob API, which needs its own permission; fail loudly rather than hand out
        # URLs that answer 403.
        raise RuntimeError(
            f"{type(credentials).__name__} credentials cannot sign URLs; "
            "use a service-account key for GCS downloads"
        )

    def _list(self, object_prefix: str) -> list[storage.Blob]:
        # The trailing slash keeps job/out1 from matching job/out10/....
        return list(self.client.list_blobs(self.bucket, prefix=f"{object_prefix}/"))

    def _upload_file(self, item: tuple[Path, str]) -> None:
        path, name = item
        blob = self.bucket.blob(name, chunk_size=self.upload_chunk_bytes)
        blob.upload_from_filename(str(path), content_type=mime_type_for(path))

    @staticmethod
    def _delete_blob(blob: storage.Blob) -> bool:
        from google.api_core import exceptions as google_exceptions

        try:
            blob.delete()
        except google_exceptions.NotFound:
            return False  # deleted by someone else between listing and now: not ours to count
        return True

    def _in_parallel(
        self, work: Callable[[_Item], _Result], items: Iterable[_Item]
    ) -> list[_Result]:
        items = list(items)
        if len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.transfer_concurrency) as pool:
            # list() re-raises the first failure after every started transfer has finished.
            return list(pool.map(work, items))


async def download_to(url: str, target: Path, client: storage.Client) -> Path:
    """Stage a gs:// input at `target` so FFmpeg reads a local file.

    FileNotFoundError for a missing bucket or object, PermissionError when access is refused.
    The download lands beside `target` and is renamed into place, so a file at `target` is
    always complete (the library also verifies the object's checksum).
    """
    bucket_name, object_name = parse_gs_url(url)
    partial = target.with_name(f"{target.name}.partial")

    def download() -> None:
        from google.api_core import exceptions as google_exceptions

        target.parent.mkdir(parents=True, exist_ok=True)
        blob = client.bucket(bucket_name).blob(object_name)
        try:
            blob.download_to_filename(str(partial))
        except google_exceptions.NotFound:
            raise FileNotFoundError(f"{url} does not exist") from None
        except (google_exceptions.Forbidden, google_exceptions.Unauthorized) as error:
            raise PermissionError(f"access to {url} was refused ({error.code})") from None
        partial.replace(target)

    try:
        await asyncio.to_thread(download)
    finally:
        # The library removes its partial file only after a checksum mismatch or a 404; a
        # refused or dropped download leaves it behind.
        partial.unlink(missing_ok=True)
    return target
