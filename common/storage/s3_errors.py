"""S3 failures sorted into worth-retrying and final, worded without keys or signed URLs.

Messages name the step, the bucket, the object and the S3 error code only; exceptions of the
HTTP layers (whose text can hold a signed URL) are never chained into ours.
"""

from __future__ import annotations

import re

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from common.storage.failures import (
    OriginUnusable,
    StorageRefused,
    StorageUnavailable,
    connection_failure,
)

__all__ = [
    "OriginUnusable",
    "StorageRefused",
    "StorageUnavailable",
    "refused_deletes",
    "status_of",
    "transfer_error",
    "unusable",
]

# An S3 error code as it may appear in our messages; anything else the endpoint sends back is
# replaced, so a hostile endpoint cannot write text of its choosing into our logs.
_ERROR_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RETRYABLE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"}
)


def unusable(
    endpoint: str, bucket: str, step: str, error: BotoCoreError | ClientError
) -> OriginUnusable:
    """Why the probe failed at `step` ("cannot write to"), for the person setting up the origin."""
    if reason := _reach_failure(error):
        return OriginUnusable(f"cannot reach {endpoint}: {reason}")
    code = _code_of(error)
    if code == "NoSuchBucket":
        return OriginUnusable(f"bucket {bucket} does not exist (NoSuchBucket)")
    return OriginUnusable(f"{step} bucket {bucket}: {code}")


def transfer_error(
    endpoint: str, action: str, error: BotoCoreError | ClientError
) -> StorageUnavailable | StorageRefused:
    """A failed transfer, sorted by whether trying `action` again could help."""
    if reason := _reach_failure(error):
        return StorageUnavailable(f"{action}: cannot reach {endpoint}: {reason}")
    if isinstance(error, ClientError):
        status = status_of(error)
        code = _code_of(error)
        if status >= 500 or status == 429 or code in _RETRYABLE_CODES:
            return StorageUnavailable(f"{action}: the bucket answered {code} ({status})")
        return StorageRefused(f"{action}: {code} ({status})")
    return StorageUnavailable(f"{action}: {type(error).__name__}")


def refused_deletes(bucket: str, refused: list[dict[str, str]], batch_size: int) -> StorageRefused:
    """A DeleteObjects batch that answered 200 yet listed keys it refused."""
    code = refused[0].get("Code", "")
    return StorageRefused(
        f"deleting from bucket {bucket}: {len(refused)} of {batch_size} "
        f"objects refused, the first {refused[0].get('Key')} with "
        f"{code if _ERROR_CODE.fullmatch(code) else 'an unnamed error'}"
    )


def status_of(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _code_of(error: BotoCoreError | ClientError) -> str:
    if not isinstance(error, ClientError):
        return type(error).__name__
    code = str(error.response.get("Error", {}).get("Code") or "")
    if _ERROR_CODE.fullmatch(code):
        return code
    # A HEAD answer has no body, so no code: its status is all there is.
    return f"HTTP {status_of(error)}"


def _reach_failure(error: BotoCoreError | ClientError) -> str | None:
    """Why no answer came back at all, or None when the bucket answered."""
    if isinstance(error, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(error, ReadTimeoutError):
        return "no answer in time"
    if isinstance(error, SSLError):
        return "TLS handshake failed"
    if isinstance(error, EndpointConnectionError):
        return connection_failure(str(error.kwargs.get("error", "")))
    if isinstance(error, BotoConnectionError | HTTPClientError | IncompleteReadError):
        return "connection lost"
    return None
