"""S3-compatible buckets (AWS S3, R2, MinIO, B2, SeaweedFS) as an organization's origin.

The server holds the organization's keys and uses them here; workers never do: they are handed
presigned URLs for exactly the files of their task and move the bytes with
`common/storage/grants.py`. Keys use the same layout and replace semantics as GcsStorage
({job_id}/{output_id}/{path} under the origin's prefix), so callers treat both backends alike.
Every call blocks on HTTP: async callers run them in a thread.

Nothing this module raises carries the secret key, an Authorization header or a presigned URL:
its failures are worded by `common/storage/s3_errors.py`.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import requests
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.storage.failures import requests_failure_reason

# One rule for object keys in every bucket backend (dot segments, empty segments, '?', '#',
# control characters): presigned URLs meet the same HTTP normalisation as GCS's signed ones.
from common.storage.gcs import _check_key as check_object_key
from common.storage.media_types import mime_type_for
from common.storage.s3_errors import (
    OriginUnusable,
    StorageUnavailable,
    refused_deletes,
    status_of,
    transfer_error,
    unusable,
)
from common.storage.s3_location_rules import (
    check_bucket_name,
    check_endpoint_url,
    check_prefix,
    check_region,
)

# SigV4 presigned URLs cannot outlive seven days.
MAX_PRESIGNED_TTL_SECONDS = 7 * 24 * 3600
# Connecting to the bucket, and waiting for each part of a relayed object's body.
MEDIA_TIMEOUT_SECONDS = (10.0, 60.0)
# open_media's URL is used the moment it is made; the signature is checked when the request
# starts, so a long body outlives it safely.
_MEDIA_URL_TTL_SECONDS = 60
# HLS/DASH outputs are hundreds of small segments: one request at a time spends the upload
# waiting on round trips.
DEFAULT_TRANSFER_CONCURRENCY = 8
# DeleteObjects takes at most 1,000 keys per request.
_DELETE_BATCH = 1000
# Single PUTs up to this size, multipart above it: a 100 MB MP4 goes up in parallel parts and
# a dropped connection re-sends one part, not the file.
_MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024
_DOWNLOAD_PART_BYTES = 1024 * 1024
_CONTENT_TYPE = re.compile(r"[!-~][ -~]{0,254}")


@dataclass(frozen=True)
class S3Location:
    """Where an origin's objects live. An empty endpoint_url means AWS's own for the region."""

    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    path_style: bool


@dataclass(frozen=True)
class S3Keys:
    access_key_id: str
    # Kept out of repr so a logged location, grant or error never shows it.
    secret_access_key: str = field(repr=False)


class S3Storage:
    def __init__(
        self,
        location: S3Location,
        keys: S3Keys,
        *,
        transfer_concurrency: int = DEFAULT_TRANSFER_CONCURRENCY,
    ) -> None:
        check_bucket_name(location.bucket)
        check_region(location.region)
        self.bucket = location.bucket
        self.prefix = location.prefix.strip("/")
        check_prefix(self.prefix)
        endpoint = check_endpoint_url(location.endpoint_url) if location.endpoint_url else None
        self.transfer_concurrency = max(transfer_concurrency, 1)
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if location.path_style else "virtual"},
            connect_timeout=5,
            read_timeout=30,
            # botocore counts max_attempts after the first: three tries in all.
            retries={"max_attempts": 2, "mode": "standard"},
            # Every transfer thread holds a connection; botocore's default pool is 10.
            max_pool_connections=max(self.transfer_concurrency, 10),
            # The origin says where its bucket is: AWS_ENDPOINT_URL in the server's
            # environment must not send an organization's keys somewhere else.
            ignore_configured_endpoint_urls=True,
            # botocore's default adds CRC32 trailers to every PUT, which several
            # S3-compatible stores refuse; checksums go only where the API requires one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session of our own holding this organization's keys: boto3's default session is
        # shared by every caller in the process and not safe to make clients from at once.
        session = boto3.session.Session(
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            region_name=location.region,
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint, config=config)
        # The probe answers someone waiting on a form: one attempt, so an endpoint that never
        # answers fails it within the connect timeout instead of three times that.
        self._probe_client: Any = session.client(
            "s3",
            endpoint_url=endpoint,
            config=config.merge(Config(retries={"total_max_attempts": 1, "mode": "standard"})),
        )
        # Where errors say we tried to go: scheme://host[:port], never a signed URL.
        self.endpoint = self._client.meta.endpoint_url.rstrip("/")
        self._http = requests.Session()
        # No ~/.netrc: an Authorization header from it beside a presigned URL's signature
        # makes S3 refuse the request.
        self._http.trust_env = False

    def object_name(self, key: str) -> str:
        check_object_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_directory(self, source: Path, key_prefix: str) -> None:
        """Upload every file of `source` under `key_prefix`, replacing what was there.

        New files are written first and stale ones deleted afterwards, rather than emptying
        the prefix first: an S3 overwrite is atomic, so readers of a re-run output never see
        a prefix with the playlist gone, and a failed upload leaves the previous files in
        place instead of none.
        """
        target = self.object_name(key_prefix)
        uploads = self._uploads_of(source, target)
        self._upload(uploads)
        fresh = {name for _, name in uploads}
        stale = [name for name, _ in self._list(target) if name not in fresh]
        self._delete(stale)

    def add_files(self, source: Path, key_prefix: str) -> None:
        """Upload every file of `source` under `key_prefix`, keeping the objects already
        there (chunks of one output arrive from several workers into the same folders)."""
        self._upload(self._uploads_of(source, self.object_name(key_prefix)))

    def fetch_file(self, key: str, target: Path) -> None:
        """Download the stored object `key` to `target` (a merge reads the chunks back).

        The bytes land beside `target` and are renamed into place, so a file at `target` is
        always whole.
        """
        name = self.object_name(key)
        action = f"downloading {name} from bucket {self.bucket}"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.part")
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=name)
            with partial.open("wb") as sink:
                for part in answer["Body"].iter_chunks(_DOWNLOAD_PART_BYTES):
                    sink.write(part)
            partial.replace(target)
        except (BotoCoreError, ClientError) as error:
            raise transfer_error(self.endpoint, action, error) from None
        finally:
            partial.unlink(missing_ok=True)

    def delete_prefix(self, key_prefix: str) -> int:
        """Delete every object under `key_prefix`; how many were listed and deleted.

        S3 answers a delete of an object that is already gone as a success, so an object
        removed by someone else between the listing and the delete is still counted.
        """
        return self._delete([name for name, _ in self._list(self.object_name(key_prefix))])

    def delete_files(self, key_prefix: str, paths: Sequence[str]) -> int:
        """Delete the named objects under `key_prefix` (batched, not one request per file);
        how many were asked for. Every name is checked before anything is deleted: a path
        with dot or empty segments is refused (UnsafeKey), so none climbs out of the prefix."""
        names = [self.object_name(f"{key_prefix.rstrip('/')}/{path}") for path in paths]
        return self._delete(names)

    def stored_sizes(self, key_prefix: str) -> dict[str, int]:
        """Size of every object under `key_prefix`, by its name relative to the prefix (one
        paginated listing, not a request per file)."""
        base = self.object_name(key_prefix).rstrip("/") + "/"
        return {name[len(base) :]: size for name, size in self._list(base.rstrip("/"))}

    def exists(self, key: str) -> bool:
        name = self.object_name(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if status_of(error) == 404:
                return False
            raise transfer_error(
                self.endpoint, f"looking up {name} in bucket {self.bucket}", error
            ) from None
        except BotoCoreError as error:
            raise transfer_error(
                self.endpoint, f"looking up {name} in bucket {self.bucket}", error
            ) from None
        return True

    def open_media(self, key: str, headers: dict[str, str]) -> requests.Response:
        """Start reading the stored object `key` with the caller's Range and validators
        passed through (the bucket answers 200, 206, 304 or 416 itself); the body streams.

        The caller chooses the headers (the relay forwards Range, If-Range, If-None-Match and
        If-Modified-Since): they are not signed, so they travel beside the URL's signature.
        """
        url, _ = self.presigned_get(key, _MEDIA_URL_TTL_SECONDS)
        try:
            return self._http.get(url, headers=headers, stream=True, timeout=MEDIA_TIMEOUT_SECONDS)
        except requests.RequestException as error:
            # The exception's text holds the signed URL: only its kind goes on.
            raise StorageUnavailable(
                f"reading {self.object_name(key)} from bucket {self.bucket}: cannot reach "
                f"{self.endpoint}: {requests_failure_reason(error)}"
            ) from None

    def presigned_get(self, key: str, ttl_seconds: int) -> tuple[str, datetime]:
        """A GET URL for `key` and the moment it stops working."""
        name = self.object_name(key)
        expires_at = _expiry(ttl_seconds)
        url = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": name},
            ExpiresIn=ttl_seconds,
        )
        return url, expires_at

    def presigned_put(
        self, key: str, ttl_seconds: int, content_type: str
    ) -> tuple[str, dict[str, str], datetime]:
        """A PUT URL for exactly `key`, the headers the uploader must send with it, and the
        moment it stops working.

        Content-Type is part of the signature, so the uploader can neither leave it out nor
        change it: players pick a demuxer from it.
        """
        name = self.object_name(key)
        if not _CONTENT_TYPE.fullmatch(content_type):
            raise ValueError("content_type must be printable ASCII, at most 255 characters")
        expires_at = _expiry(ttl_seconds)
        url = self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": name, "ContentType": content_type},
            ExpiresIn=ttl_seconds,
        )
        return url, {"Content-Type": content_type}, expires_at

    def probe(self) -> None:
        """Check these keys can write, read back, list and delete under the prefix.

        OriginUnusable names the first step that failed, the bucket and the S3 error code;
        nothing else of the answer, so the check cannot be used to read another service.
        """
        name = self.object_name(f".kiln-probe-{secrets.token_hex(8)}")
        payload = f"kiln checks it can use this bucket: {secrets.token_hex(8)}\n".encode()
        try:
            self._probe_client.put_object(
                Bucket=self.bucket, Key=name, Body=payload, ContentType="text/plain"
            )
        except (BotoCoreError, ClientError) as error:
            raise unusable(self.endpoint, self.bucket, "cannot write to", error) from None
        try:
            try:
                answer = self._probe_client.get_object(Bucket=self.bucket, Key=name)
                # One byte more than we wrote is enough to tell; an endpoint that streams
                # without end is not read to its end.
                stored = answer["Body"].read(len(payload) + 1)
            except (BotoCoreError, ClientError) as error:
                raise unusable(self.endpoint, self.bucket, "cannot read back from", error) from None
            if stored != payload:
                raise OriginUnusable(
                    f"cannot read back from bucket {self.bucket}: the probe object came back "
                    "different"
                )
            try:
                self._probe_client.list_objects_v2(Bucket=self.bucket, Prefix=name, MaxKeys=1)
            except (BotoCoreError, ClientError) as error:
                raise unusable(self.endpoint, self.bucket, "cannot list", error) from None
        except OriginUnusable:
            self._forget_probe(name)
            raise
        try:
            self._probe_client.delete_object(Bucket=self.bucket, Key=name)
        except (BotoCoreError, ClientError) as error:
            raise unusable(self.endpoint, self.bucket, "cannot delete from", error) from None

    def _forget_probe(self, name: str) -> None:
        # Best effort: the probe already failed, and that failure is what the caller needs.
        with contextlib.suppress(BotoCoreError, ClientError):
            self._probe_client.delete_object(Bucket=self.bucket, Key=name)

    def _uploads_of(self, source: Path, target: str) -> list[tuple[Path, str]]:
        uploads = [
            (path, f"{target}/{path.relative_to(source).as_posix()}")
            for path in sorted(source.rglob("*"))
            # Only regular files: a symlink in a scratch directory could point anywhere on
            # the worker's disk, and uploading its target would publish that file.
            if path.is_file() and not path.is_symlink()
        ]
        for _, name in uploads:
            check_object_key(name)
        return uploads

    def _upload(self, uploads: list[tuple[Path, str]]) -> None:
        if not uploads:
            return
        config = TransferConfig(
            max_concurrency=self.transfer_concurrency,
            multipart_threshold=_MULTIPART_THRESHOLD_BYTES,
            multipart_chunksize=_MULTIPART_THRESHOLD_BYTES,
            # Without this boto3 picks the CRT client whenever awscrt happens to be installed.
            preferred_transfer_client="classic",
        )
        # One transfer manager for the whole directory: its thread pool is shared by every
        # file (boto3's upload_file builds and tears down a pool per call).
        with create_transfer_manager(self._client, config) as manager:
            started = [
                (
                    name,
                    manager.upload(
                        str(path),
                        self.bucket,
                        name,
                        extra_args={"ContentType": mime_type_for(path)},
                    ),
                )
                for path, name in uploads
            ]
            for name, future in started:
                try:
                    future.result()
                except (BotoCoreError, ClientError) as error:
                    raise transfer_error(
                        self.endpoint, f"uploading {name} to bucket {self.bucket}", error
                    ) from None

    def _list(self, object_prefix: str) -> Iterator[tuple[str, int]]:
        """(name, size) of every object under the folder `object_prefix`."""
        # The trailing slash keeps job/out1 from matching job/out10/....
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{object_prefix}/"
        )
        try:
            for page in pages:
                for entry in page.get("Contents", ()):
                    yield entry["Key"], int(entry["Size"])
        except (BotoCoreError, ClientError) as error:
            raise transfer_error(
                self.endpoint, f"listing {object_prefix}/ in bucket {self.bucket}", error
            ) from None

    def _delete(self, names: list[str]) -> int:
        deleted = 0
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start : start + _DELETE_BATCH]
            try:
                answer = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": name} for name in batch], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as error:
                raise transfer_error(
                    self.endpoint, f"deleting from bucket {self.bucket}", error
                ) from None
            # A batch answers 200 even when some of its keys were refused: each is listed.
            if refused := answer.get("Errors"):
                raise refused_deletes(self.bucket, refused, len(batch))
            deleted += len(batch)
        return deleted


def _expiry(ttl_seconds: int) -> datetime:
    if not 0 < ttl_seconds <= MAX_PRESIGNED_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be 1..{MAX_PRESIGNED_TTL_SECONDS}")
    # Taken before signing and rounded down, so the reported expiry is never later than the
    # URL's own (botocore dates the signature a moment after this).
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl_seconds)
