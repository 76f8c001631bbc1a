"""Output origins: where a job's files go, and how clients fetch them.

An origin is "" (the server's local storage, served at signed /files/ URLs) or
"gs://bucket/prefix" (Google Cloud Storage, fetched at V4-signed URLs). The
server records the resolved origin on the job at Create, so every task, every
download URL and DeleteOutputs agree on it even if configuration changes later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from .keys import safe_relative_path
from .local import LocalStorage, UnsafeKey
from .signing import UrlSigner


class Backend(Protocol):
    def put_directory(self, source, key_prefix: str) -> None: ...
    def delete_prefix(self, key_prefix: str) -> int: ...
    def delete_files(self, key_prefix: str, paths: Sequence[str]) -> int: ...
    def stored_sizes(self, key_prefix: str) -> dict[str, int]: ...
    def add_files(self, source, key_prefix: str) -> None: ...
    def fetch_file(self, key: str, target) -> None: ...


_JOB_ID = re.compile(r"job_[0-9a-z]{26}")


class OriginRefused(ValueError):
    """An output origin this server may not write to."""


def split_origin(origin: str) -> tuple[str, str]:
    from .gcs import parse_gs_url

    bucket, _, prefix = origin.removeprefix("gs://").partition("/")
    if not bucket:
        raise OriginRefused("output_origin must be gs://bucket[/prefix]")
    try:
        parse_gs_url(f"gs://{bucket}/{prefix or 'x'}")
    except ValueError as error:
        raise OriginRefused(str(error)) from None
    return bucket, prefix.strip("/")


class Origins:
    def __init__(
        self,
        local: LocalStorage,
        signer: UrlSigner | None = None,
        *,
        allowed_buckets: Sequence[str] = (),
        ttl_seconds: int = 3600,
    ) -> None:
        self.local = local
        self.signer = signer
        self.allowed_buckets = set(allowed_buckets)
        self.ttl_seconds = ttl_seconds

    async def ensure(self, origins: Iterable[str]) -> None:
        """Make the origins named usable by the synchronous calls below. Local storage and
        gs:// buckets need nothing; the server's origins of organizations load here."""

    def check(self, origin: str) -> None:
        """Raise OriginRefused unless outputs may be written to `origin`."""
        if not origin:
            return
        if not origin.startswith("gs://"):
            raise OriginRefused("output_origin must be a gs:// URL (or empty for local storage)")
        bucket, _ = split_origin(origin)
        if bucket not in self.allowed_buckets:
            raise OriginRefused(
                f"bucket {bucket!r} is not an allowed output bucket (KILN_GCS_OUTPUT_BUCKETS)"
            )

    def backend(self, origin: str) -> Backend:
        if not origin:
            return self.local
        bucket, prefix = split_origin(origin)
        return _gcs_storage(bucket, prefix)

    def bucket_storage(self, origin: str):
        """The GCS storage of a gs:// origin (the playback route relays objects from it)."""
        bucket, prefix = split_origin(origin)
        return _gcs_storage(bucket, prefix)

    def url(self, origin: str, job_id: str, output_id: str, path: str) -> tuple[str, datetime]:
        """A download URL for one file of one output; only ever inside that output's prefix."""
        if not safe_relative_path(path):
            raise UnsafeKey(f"{job_id}/{output_id}/{path}")
        if not origin:
            assert self.signer is not None
            return self.signer.sign(job_id, output_id, path)
        bucket, prefix = split_origin(origin)
        return _gcs_storage(bucket, prefix).signed_url(
            f"{job_id}/{output_id}/{path}", self.ttl_seconds
        )

    def output_job_ids(self, url: str) -> set[str]:
        """The jobs whose output storage `url` points into (empty when it points elsewhere).

        Any job-id-shaped segment counts, whatever prefix a job's origin used: refusing a
        look-alike name costs a user a rename, missing a real one leaks another's file.
        """
        if url.startswith("gs://"):
            bucket, _, name = url.removeprefix("gs://").partition("/")
            if bucket not in self.allowed_buckets:
                return set()
            segments = name.split("/")
        elif url.startswith("file://"):
            path = Path(os.path.realpath(unquote(urlsplit(url).path)))
            if self.local.root not in path.parents:
                return set()
            segments = [path.relative_to(self.local.root).parts[0]]
        else:
            return set()
        return {segment for segment in segments if _JOB_ID.fullmatch(segment)}

    def stored_sizes(self, origin: str, key_prefix: str) -> dict[str, int]:
        return self.backend(origin).stored_sizes(key_prefix)

    def delete_job_files(self, origin: str, job_id: str) -> int:
        return self.backend(origin).delete_prefix(job_id)


@cache
def _gcs_storage(bucket: str, prefix: str):
    # One client per process: it holds the HTTP session and credentials.
    from .gcs import GcsStorage

    return GcsStorage(bucket, prefix, _gcs_client())


@cache
def _gcs_client():
    from .gcs import client_from_environment

    return client_from_environment()


def gcs_client():
    return _gcs_client()
