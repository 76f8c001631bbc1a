"""What an origin is, kind by kind: the checked settings, the secret apart, and the
messages answers are made of (never carrying the secret).

`OriginSettings.from_message` is the one place a request's origin is checked; every
refusal names the field ("origin.s3.bucket") and says what is wrong, never echoing a
secret.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from kiln.v1 import origin_service_pb2 as opb

from common.input_policy import InputPolicy, InputRefused
from common.storage import s3_location_rules
from common.storage.gcs import parse_gs_url

from ..domain.errors import FieldViolation

Kind = Literal["s3", "gcs", "http"]
Use = Literal["input", "output", "input_and_output"]

MAX_NAME_LENGTH = 200
MAX_URL_LENGTH = 2048
MAX_SECRET_LENGTH = 16 * 1024
MAX_KEY_ID_LENGTH = 256
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
# Headers a read must not let a user set: they would change what is read, or where.
_RESERVED_HEADERS = {"host", "range", "content-length", "transfer-encoding", "connection"}

_USE_NAMES: dict[opb.OriginUse, Use] = {
    opb.ORIGIN_USE_INPUT: "input",
    opb.ORIGIN_USE_OUTPUT: "output",
    opb.ORIGIN_USE_INPUT_AND_OUTPUT: "input_and_output",
}
_USE_ENUMS = {name: number for number, name in _USE_NAMES.items()}


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    path_style: bool
    access_key_id: str


@dataclass(frozen=True)
class GcsSettings:
    bucket: str
    prefix: str
    # The service-account key's client_email; "" when the server's own credentials are used.
    client_email: str = ""


@dataclass(frozen=True)
class HttpSettings:
    base_url: str
    header_name: str = ""


KindSettings = S3Settings | GcsSettings | HttpSettings


@dataclass(frozen=True)
class OriginSettings:
    """An origin as checked, its secret apart (`secret` is "" when none was given)."""

    name: str
    use: Use
    kind: Kind
    settings: KindSettings
    public_base_url: str

    def settings_json(self) -> dict[str, Any]:
        return asdict(self.settings)

    @property
    def reads(self) -> bool:
        return self.use in ("input", "input_and_output")

    @property
    def writes(self) -> bool:
        return self.use in ("output", "input_and_output")


def settings_from_row(kind: str, stored: dict[str, Any]) -> KindSettings:
    if kind == "s3":
        return S3Settings(**stored)
    if kind == "gcs":
        return GcsSettings(**stored)
    return HttpSettings(**stored)


def use_enum(use: str) -> opb.OriginUse:
    return _USE_ENUMS[use]  # type: ignore[index]


@dataclass(frozen=True)
class CheckedOrigin:
    origin: OriginSettings
    secret: str  # "" when the request left it empty


def check_origin(
    message: opb.Origin, policy: InputPolicy, *, field: str = "origin"
) -> tuple[CheckedOrigin | None, list[FieldViolation]]:
    """The request's origin checked field by field: every violation at once."""
    violations: list[FieldViolation] = []

    def refuse(name: str, problem: str) -> None:
        violations.append(FieldViolation(f"{field}.{name}", problem))

    name = message.name.strip()
    if not name:
        refuse("name", "is required")
    elif len(name) > MAX_NAME_LENGTH or _has_control(name):
        refuse("name", f"must be at most {MAX_NAME_LENGTH} printable characters")

    kind = message.WhichOneof("kind")
    if kind is None:
        refuse("kind", "set exactly one of s3, gcs or http")
        return None, violations

    use: Use
    if message.use == opb.ORIGIN_USE_UNSPECIFIED:
        use = "input" if kind == "http" else "input_and_output"
    elif message.use in _USE_NAMES:
        use = _USE_NAMES[message.use]
    else:
        refuse("use", f"unknown value {message.use}")
        use = "input"
    if kind == "http" and use != "input":
        refuse("use", "an http origin is read-only: use ORIGIN_USE_INPUT")

    public_base_url = ""
    if message.public_base_url:
        if kind == "http":
            refuse("public_base_url", "applies to bucket origins only")
        else:
            public_base_url = _checked_url(message.public_base_url, "public_base_url", refuse)

    settings: KindSettings | None = None
    secret = ""
    if kind == "s3":
        settings, secret = _check_s3(message.s3, policy, field, refuse)
    elif kind == "gcs":
        settings, secret = _check_gcs(message.gcs, refuse)
    else:
        settings, secret = _check_http(message.http, policy, refuse)
    if violations or settings is None:
        return None, violations
    return CheckedOrigin(OriginSettings(name, use, kind, settings, public_base_url), secret), []


def _check_s3(message: opb.S3Origin, policy: InputPolicy, field: str, refuse):
    endpoint = ""
    if message.endpoint_url:
        endpoint = _checked_url(message.endpoint_url, "s3.endpoint_url", refuse)
        if endpoint:
            try:
                endpoint = s3_location_rules.check_endpoint_url(endpoint)
                policy.check_resolved(endpoint)
            except (ValueError, InputRefused) as error:
                refuse("s3.endpoint_url", str(error))
                endpoint = ""
    region = message.region or "us-east-1"
    try:
        s3_location_rules.check_region(region)
    except ValueError as error:
        refuse("s3.region", str(error))
    _run_check(
        s3_location_rules.check_bucket_name, message.bucket, "s3.bucket", refuse, required=True
    )
    prefix = message.prefix.strip("/")
    if prefix:
        _run_check(s3_location_rules.check_prefix, prefix, "s3.prefix", refuse)
    key_id = message.access_key_id
    if not key_id:
        refuse("s3.access_key_id", "is required")
    elif len(key_id) > MAX_KEY_ID_LENGTH or not key_id.isascii() or _has_control(key_id):
        refuse(
            "s3.access_key_id", f"must be at most {MAX_KEY_ID_LENGTH} printable ASCII characters"
        )
    secret = message.secret_access_key
    _check_secret(secret, "s3.secret_access_key", refuse)
    settings = S3Settings(endpoint, region, message.bucket, prefix, message.path_style, key_id)
    return settings, secret


def _check_gcs(message: opb.GcsOrigin, refuse):
    try:
        parse_gs_url(f"gs://{message.bucket}/x")
    except ValueError as error:
        refuse("gcs.bucket", str(error) if message.bucket else "is required")
    prefix = message.prefix.strip("/")
    if prefix:
        _run_check(s3_location_rules.check_prefix, prefix, "gcs.prefix", refuse)
    secret = message.service_account_key_json
    client_email = ""
    if secret:
        _check_secret(secret, "gcs.service_account_key_json", refuse)
        try:
            key = json.loads(secret)
            if not isinstance(key, dict) or key.get("type") != "service_account":
                raise ValueError
            client_email = str(key["client_email"])
            str(key["private_key"])
        except (ValueError, KeyError, TypeError):
            refuse(
                "gcs.service_account_key_json",
                "is not a service-account key (JSON with type service_account, client_email "
                "and private_key)",
            )
    return GcsSettings(message.bucket, prefix, client_email), secret


def _check_http(message: opb.HttpOrigin, policy: InputPolicy, refuse):
    base = _checked_url(message.base_url, "http.base_url", refuse, required=True)
    if base:
        try:
            policy.check_resolved(base)
        except InputRefused as error:
            refuse("http.base_url", str(error))
    header = message.header_name
    if header:
        if not _HEADER_NAME.fullmatch(header) or header.lower() in _RESERVED_HEADERS:
            refuse("http.header_name", "must be a plain header name other than Host or Range")
        else:
            # FFmpeg on the worker reads an http origin's input in place, so a header would
            # have to travel to the worker: that is the credential workers must never hold.
            # Until the server relays such reads, an authenticated server is an s3/gcs case.
            refuse(
                "http.header_name",
                "is not supported yet: workers read http origins directly and never get "
                "credentials; put the files in an s3 or gcs origin, or use presigned URLs",
            )
    elif message.header_value:
        refuse("http.header_name", "is required with header_value")
    secret = message.header_value
    _check_secret(secret, "http.header_value", refuse)
    if any(character in secret for character in "\r\n"):
        refuse("http.header_value", "must be one line")
    return HttpSettings(base.rstrip("/"), header), secret


def _checked_url(url: str, name: str, refuse, *, required: bool = False) -> str:
    if not url:
        if required:
            refuse(name, "is required")
        return ""
    if len(url) > MAX_URL_LENGTH or _has_control(url):
        refuse(name, f"must be at most {MAX_URL_LENGTH} printable characters")
        return ""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        refuse(name, "must be an http:// or https:// URL with a host")
        return ""
    if parts.username or parts.password or parts.query or parts.fragment:
        refuse(name, "must not carry credentials, a query or a fragment")
        return ""
    return url.rstrip("/")


def _run_check(check, value: str, name: str, refuse, *, required: bool = False) -> None:
    if not value:
        if required:
            refuse(name, "is required")
        return
    if len(value) > MAX_URL_LENGTH or _has_control(value):
        refuse(name, "is too long or holds control characters")
        return
    try:
        check(value)
    except ValueError as error:
        refuse(name, str(error))


def _check_secret(secret: str, name: str, refuse) -> None:
    # The value is never echoed: a refusal says only what is wrong with it.
    if len(secret) > MAX_SECRET_LENGTH:
        refuse(name, f"must be at most {MAX_SECRET_LENGTH} characters")
    elif "\x00" in secret:
        refuse(name, "must not contain NUL")


def _has_control(text: str) -> bool:
    return any(ord(character) < 0x20 or ord(character) == 0x7F for character in text)
