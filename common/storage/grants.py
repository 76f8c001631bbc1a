"""The worker's side of an organization's bucket: moving files with the URLs it was granted.

A worker never holds an organization's keys. The server signs one URL per file of the task
(S3 presigned, GCS V4-signed: both are a method, a URL and headers to send) and the worker
only sends bytes to exactly those URLs. Nothing here knows which store is at the other end.

A grant's URL is a bearer credential for its file until it expires: it is kept out of reprs
and error messages, which name the file's path, the host and the HTTP status only.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from common.storage.failures import StorageRefused, StorageUnavailable, requests_failure_reason

DEFAULT_CONCURRENCY = 8
# (connect, read): a read waits for the store's answer after the whole body went out, which
# for a large file on a slow store takes a while.
DEFAULT_TIMEOUT_SECONDS = (5.0, 120.0)
# Connection failures and 5xx answers are tried again this many times in all, after a short
# pause: a store restarting or shedding load for a second should not fail a whole ladder.
DEFAULT_ATTEMPTS = 3
_RETRY_PAUSE_SECONDS = 0.5
_DOWNLOAD_PART_BYTES = 1024 * 1024
_UPLOAD_METHODS = frozenset({"PUT", "POST"})
# 408 and 429 say "not now", not "no".
_RETRYABLE_STATUSES = frozenset({408, 429})
# The error code S3 and GCS's XML API put in an error body; only a plain word is repeated.
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9._-]{1,64})</Code>")

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class TransferGrant:
    """Permission to move one file: `path` is relative to the output's prefix."""

    path: str
    method: str
    url: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict)


def upload_with_grants(
    files: Sequence[tuple[Path, TransferGrant]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT_SECONDS,
    attempts: int = DEFAULT_ATTEMPTS,
) -> None:
    """Send each file to its grant's URL, `concurrency` at a time.

    The body streams from disk with its Content-Length set, so a 100 MB MP4 is never held in
    memory. StorageRefused for an answer that will not change (403, 404, a bad signature),
    StorageUnavailable when the store could not be reached or answered 5xx after `attempts`
    tries; the first failure stops the files not yet started and is raised once the ones in
    flight have ended.
    """
    for _, grant in files:
        if grant.method not in _UPLOAD_METHODS:
            raise ValueError(f"grant for {grant.path} is for {grant.method}, not an upload")
        _check_url(grant)
    # Largest first: a big MP4 started last would finish long after the segments.
    ordered = sorted(files, key=lambda item: item[0].stat().st_size, reverse=True)
    with _session(concurrency) as session:

        def upload(item: tuple[Path, TransferGrant]) -> None:
            path, grant = item
            _with_retries(attempts, lambda: _upload_once(session, path, grant, timeout))

        _run_all(upload, ordered, concurrency)


def download_with_grants(
    grants: Sequence[tuple[TransferGrant, Path]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT_SECONDS,
    attempts: int = DEFAULT_ATTEMPTS,
) -> None:
    """Fetch each grant's file to its target path, `concurrency` at a time.

    Each file is written to `<target>.part` and renamed into place when whole, so a file at a
    target path is always complete. Errors as for upload_with_grants.
    """
    for grant, _ in grants:
        if grant.method != "GET":
            raise ValueError(f"grant for {grant.path} is for {grant.method}, not a download")
        _check_url(grant)
    with _session(concurrency) as session:

        def download(item: tuple[TransferGrant, Path]) -> None:
            grant, target = item
            _with_retries(attempts, lambda: _download_once(session, grant, target, timeout))

        _run_all(download, list(grants), concurrency)


def _session(concurrency: int) -> requests.Session:
    session = requests.Session()
    # No proxies from the environment and no ~/.netrc: a netrc Authorization header beside a
    # signed URL makes the store refuse it, and the grant already says where to go.
    session.trust_env = False
    # One pooled connection per transfer thread (requests keeps 10 per host otherwise, and
    # drops the rest after each use).
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(concurrency, 1))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _check_url(grant: TransferGrant) -> None:
    parts = urlsplit(grant.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"grant for {grant.path} has no http(s) URL")


def _upload_once(
    session: requests.Session, path: Path, grant: TransferGrant, timeout: tuple[float, float]
) -> None:
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        headers = {**grant.headers, "Content-Length": str(size)}
        # requests sends an empty file object as a chunked body of unknown length, which
        # presigned PUTs refuse: an empty file goes as an empty body.
        body = file if size else b""
        try:
            answer = session.request(
                grant.method, grant.url, data=body, headers=headers, timeout=timeout
            )
        except requests.RequestException as error:
            raise _unreachable("upload", grant, error) from None
    with answer:
        _check_answer("upload", grant, answer)


def _download_once(
    session: requests.Session, grant: TransferGrant, target: Path, timeout: tuple[float, float]
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.part")
    try:
        with session.get(grant.url, headers=grant.headers, stream=True, timeout=timeout) as answer:
            _check_answer("download", grant, answer)
            with partial.open("wb") as sink:
                for part in answer.iter_content(_DOWNLOAD_PART_BYTES):
                    sink.write(part)
        partial.replace(target)
    except requests.RequestException as error:
        raise _unreachable("download", grant, error) from None
    finally:
        partial.unlink(missing_ok=True)


def _check_answer(action: str, grant: TransferGrant, answer: requests.Response) -> None:
    if 200 <= answer.status_code < 300:
        return
    # Error bodies are small; a stray large one is cut off rather than read whole.
    code_match = _ERROR_CODE.search(next(answer.iter_content(8192), b""))
    code = f"{code_match.group(1).decode()} " if code_match else ""
    status = answer.status_code
    message = f"{action} of {grant.path} to {_host_of(grant)}: {code}(HTTP {status})"
    if status >= 500 or status in _RETRYABLE_STATUSES:
        raise StorageUnavailable(message)
    raise StorageRefused(message)


def _unreachable(
    action: str, grant: TransferGrant, error: requests.RequestException
) -> StorageUnavailable:
    # The exception's own text holds the signed URL; only its kind is repeated.
    return StorageUnavailable(
        f"{action} of {grant.path}: cannot reach {_host_of(grant)}: "
        f"{requests_failure_reason(error)}"
    )


def _host_of(grant: TransferGrant) -> str:
    parts = urlsplit(grant.url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _with_retries(attempts: int, transfer: Callable[[], None]) -> None:
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            transfer()
            return
        except StorageUnavailable:
            if attempt >= attempts:
                raise
        # A pause that grows, so a store coming back up gets a moment to.
        time.sleep(_RETRY_PAUSE_SECONDS * attempt)


def _run_all(work: Callable[[_Item], None], items: list[_Item], concurrency: int) -> None:
    if len(items) <= 1:
        for item in items:
            work(item)
        return
    pool = ThreadPoolExecutor(max_workers=max(concurrency, 1), thread_name_prefix="grant")
    try:
        futures = [pool.submit(work, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if errors := [error for future in done if (error := future.exception()) is not None]:
            # Files not started yet are dropped; those in flight end before we raise.
            pool.shutdown(wait=True, cancel_futures=True)
            raise errors[0]
    finally:
        pool.shutdown(wait=True)
