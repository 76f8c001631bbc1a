"""Talking to an origin with its own credentials: the storage of a bucket origin, the
check made when an origin is saved, and the presigned requests handed to workers.

Only the server calls these: it holds the organization's keys, workers get URLs.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from common.storage.gcs import GcsStorage, client_from_environment
from common.storage.grants import TransferGrant
from common.storage.media_types import mime_type_for

from .kinds import HttpSettings, KindSettings, S3Settings

if TYPE_CHECKING:
    from google.cloud import storage as gcs

    from common.storage.s3 import S3Storage

    BucketStorage = S3Storage | GcsStorage

# Google's libraries are imported where a GCS origin is used (as in common/storage/gcs.py),
# and boto3 where an S3 origin is (common.storage.s3, ~0.16 s of CPU to import): a server
# with no such origin never pays for them.

PROBE_TIMEOUT_SECONDS = (5.0, 10.0)


class OriginUnusable(Exception):
    """The origin refused or could not be reached; the message names the step, never a
    secret ("cannot write to bucket renditions: AccessDenied")."""


@dataclass(frozen=True)
class Connection:
    """An origin's settings with its secret, joined only in the server's memory."""

    settings: KindSettings
    secret: str = field(repr=False)

    def storage(self, extra_prefix: str = "") -> BucketStorage:
        """The bucket's storage under its prefix (and a job's path prefix under it)."""
        settings = self.settings
        if isinstance(settings, HttpSettings):
            raise OriginUnusable("an http origin holds no outputs")
        prefix = "/".join(part for part in (settings.prefix, extra_prefix) if part)
        if isinstance(settings, S3Settings):
            from common.storage import s3

            location = s3.S3Location(
                endpoint_url=settings.endpoint_url,
                region=settings.region,
                bucket=settings.bucket,
                prefix=prefix,
                path_style=settings.path_style,
            )
            return s3.S3Storage(location, s3.S3Keys(settings.access_key_id, self.secret))
        return GcsStorage(settings.bucket, prefix, _gcs_client(self.secret))

    def input_url(self, path: str, ttl_seconds: int) -> str:
        """A URL FFmpeg reads the input from in place (ranges work on every kind)."""
        settings = self.settings
        if isinstance(settings, HttpSettings):
            return f"{settings.base_url}/{quote(path.lstrip('/'), safe='/')}"
        storage = self.storage()
        if isinstance(storage, GcsStorage):
            return storage.signed_url(path, ttl_seconds)[0]
        return storage.presigned_get(path, ttl_seconds)[0]

    def check(self) -> None:
        """Write, read back and delete a probe object (a bucket), or ask the base URL (an
        HTTP origin); OriginUnusable says which step failed."""
        settings = self.settings
        if isinstance(settings, HttpSettings):
            _check_http(settings, self.secret)
            return
        storage = self.storage()
        if isinstance(storage, GcsStorage):
            _check_gcs(storage, settings.bucket)
            return
        from common.storage import s3_errors

        try:
            storage.probe()
        except s3_errors.OriginUnusable as error:
            raise OriginUnusable(str(error)) from None


def upload_grant(storage: BucketStorage, key: str, path: str, ttl_seconds: int) -> TransferGrant:
    """A presigned write of one file: the storage server refuses any other name."""
    content_type = mime_type_for(path)
    if isinstance(storage, GcsStorage):
        return _gcs_upload_grant(storage, key, path, content_type, ttl_seconds)
    url, headers, _ = storage.presigned_put(key, ttl_seconds, content_type)
    return TransferGrant(path, "PUT", url, headers)


def download_grant(storage: BucketStorage, key: str, path: str, ttl_seconds: int) -> TransferGrant:
    if isinstance(storage, GcsStorage):
        return TransferGrant(path, "GET", storage.signed_url(key, ttl_seconds)[0], {})
    return TransferGrant(path, "GET", storage.presigned_get(key, ttl_seconds)[0], {})


def grant_expiry(ttl_seconds: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl_seconds)


def _gcs_upload_grant(
    storage: GcsStorage, key: str, path: str, content_type: str, ttl_seconds: int
) -> TransferGrant:
    from google.auth.credentials import AnonymousCredentials

    name = storage.object_name(key)
    credentials = storage.client._credentials
    if isinstance(credentials, AnonymousCredentials):
        # The emulator (STORAGE_EMULATOR_HOST) checks no signatures and its credentials can
        # sign nothing: its simple-upload URL stands in for a signed PUT, as signed_url's
        # media URL does for downloads.
        endpoint = storage.client.api_endpoint.rstrip("/")
        url = (
            f"{endpoint}/upload/storage/v1/b/{storage.bucket.name}/o"
            f"?uploadType=media&name={quote(name, safe='')}"
        )
        return TransferGrant(path, "POST", url, {"Content-Type": content_type})
    url = storage.bucket.blob(name).generate_signed_url(
        version="v4",
        expiration=timedelta(seconds=ttl_seconds),
        method="PUT",
        content_type=content_type,
    )
    return TransferGrant(path, "PUT", url, {"Content-Type": content_type})


def _gcs_client(service_account_key_json: str) -> gcs.Client:
    if not service_account_key_json:
        return _server_gcs_client()
    from google.cloud import storage as gcs
    from google.oauth2 import service_account

    info: dict[str, Any] = json.loads(service_account_key_json)
    credentials = service_account.Credentials.from_service_account_info(info)
    emulator = client_from_environment()
    return gcs.Client(
        project=info.get("project_id") or "kiln",
        credentials=credentials,
        client_options={"api_endpoint": emulator.api_endpoint},
    )


_SERVER_CLIENT: list[gcs.Client] = []


def _server_gcs_client() -> gcs.Client:
    # One client for the server's own credentials: it holds the HTTP session.
    if not _SERVER_CLIENT:
        _SERVER_CLIENT.append(client_from_environment())
    return _SERVER_CLIENT[0]


def _check_gcs(storage: GcsStorage, bucket: str) -> None:
    from google.api_core import exceptions as google_exceptions

    key = f".kiln-probe-{secrets.token_hex(8)}"
    body = secrets.token_bytes(32)
    blob = storage.bucket.blob(storage.object_name(key))
    step = "write to"
    try:
        blob.upload_from_string(body, timeout=PROBE_TIMEOUT_SECONDS)
        step = "read back from"
        if blob.download_as_bytes(timeout=PROBE_TIMEOUT_SECONDS) != body:
            raise OriginUnusable(f"cannot read back from bucket {bucket}: the bytes differ")
        step = "delete from"
        blob.delete(timeout=PROBE_TIMEOUT_SECONDS)
    except google_exceptions.NotFound:
        raise OriginUnusable(f"bucket {bucket} does not exist (NotFound)") from None
    except google_exceptions.GoogleAPICallError as error:
        reason = type(error).__name__
        raise OriginUnusable(f"cannot {step} bucket {bucket}: {reason}") from None
    except (requests.RequestException, OSError) as error:
        raise OriginUnusable(f"cannot reach GCS: {type(error).__name__}") from None


def _check_http(settings: HttpSettings, secret: str) -> None:
    headers = {"Range": "bytes=0-0"}
    if settings.header_name:
        headers[settings.header_name] = secret
    try:
        response = requests.get(
            settings.base_url + "/",
            headers=headers,
            timeout=PROBE_TIMEOUT_SECONDS,
            allow_redirects=False,
            stream=True,
        )
        response.close()
    except requests.RequestException as error:
        raise OriginUnusable(f"cannot reach {settings.base_url}: {type(error).__name__}") from None
    if response.status_code in (401, 403):
        raise OriginUnusable(
            f"{settings.base_url} refused the read ({response.status_code}): check the header"
        )
    if response.status_code >= 500:
        raise OriginUnusable(f"{settings.base_url} answered {response.status_code}")
