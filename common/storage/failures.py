"""Storage failures sorted into worth-retrying and final, worded without keys or signed URLs.

Apart from common/storage/s3_errors.py (which sorts boto's exceptions into these): the
worker's transfers through presigned URLs need only these and `requests`, and importing
botocore cost every worker process start about 0.1 s of CPU.
"""

from __future__ import annotations

import requests


class OriginUnusable(Exception):
    """The origin's bucket cannot be used with these keys; the message says which step failed."""


class StorageUnavailable(Exception):
    """The bucket did not answer usefully (unreachable, timed out, 5xx): worth trying again."""


class StorageRefused(Exception):
    """The bucket answered no (403, 404, a bad signature): trying again will not help."""


def connection_failure(text: str) -> str:
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "name resolution" in lowered:
        return "host name not found"
    if "unreachable" in lowered:
        return "network unreachable"
    return "connection failed"


def requests_failure_reason(error: requests.RequestException) -> str:
    """What kind of failure a requests exception is, without its text (which holds the URL)."""
    if isinstance(error, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(error, requests.ConnectionError):
        return connection_failure(str(error))
    return type(error).__name__
