"""What the flags of `kiln origins create` and `update` say, set on an Origin message.

Secrets (an S3 secret access key, a GCS service-account key, an HTTP header value) are never
taken as a flag's value, which would land in shell history and in `ps` for every user of the
machine: they are read here from stdin, from an environment variable the flag names, or from
a file.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import origin_service_pb2 as opb

from .origin_options import USE_VALUES, Kind, Use
from .specs import SpecError


@dataclass(frozen=True)
class OriginFlags:
    """What a create or update said, secrets already read (None: not given)."""

    name: str | None
    use: Use | None
    endpoint: str | None
    region: str | None
    bucket: str | None
    prefix: str | None
    path_style: bool | None
    access_key_id: str | None
    secret_access_key: str | None
    service_account_key_json: str | None
    base_url: str | None
    header_name: str | None
    header_value: str | None
    public_base_url: str | None

    def kind_specific(self) -> dict[str, tuple[Kind, ...]]:
        """The kind-specific flags given, each with the kinds it belongs to."""
        flags: dict[str, tuple[str | bool | None, tuple[Kind, ...]]] = {
            "--endpoint": (self.endpoint, (Kind.S3,)),
            "--region": (self.region, (Kind.S3,)),
            "--bucket": (self.bucket, (Kind.S3, Kind.GCS)),
            "--prefix": (self.prefix, (Kind.S3, Kind.GCS)),
            "--path-style": (self.path_style, (Kind.S3,)),
            "--access-key-id": (self.access_key_id, (Kind.S3,)),
            "--secret-access-key-*": (self.secret_access_key, (Kind.S3,)),
            "--service-account-key-file": (self.service_account_key_json, (Kind.GCS,)),
            "--base-url": (self.base_url, (Kind.HTTP,)),
            "--header-name": (self.header_name, (Kind.HTTP,)),
            "--header-value-*": (self.header_value, (Kind.HTTP,)),
        }
        return {flag: kinds for flag, (value, kinds) in flags.items() if value is not None}


def _read_stdin_secret(what: str) -> str:
    # On a terminal, a prompt that does not echo what is typed; from a pipe
    # (`pass show … | kiln …`), the text without the newline that usually ends it.
    value = getpass.getpass(f"{what}: ") if sys.stdin.isatty() else sys.stdin.read().rstrip("\r\n")
    if not value:
        raise SpecError(f"no {what} on stdin")
    return value


def _read_env_secret(flag: str, variable: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise SpecError(f"{flag} {variable}: that environment variable is not set or empty")
    return value


def read_secret(
    what: str, *, stdin_flag: str, from_stdin: bool, env_flag: str, env: str | None
) -> str | None:
    """The secret from stdin or from the named variable; None when neither flag was given.
    Errors name the flag and the variable, never a value."""
    if from_stdin and env is not None:
        raise SpecError(f"give the {what} once: {stdin_flag} or {env_flag}, not both")
    if from_stdin:
        return _read_stdin_secret(what)
    if env is not None:
        return _read_env_secret(env_flag, env)
    return None


def read_key_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        # strerror only: a decode error's text quotes the bytes it could not read.
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SpecError(f"--service-account-key-file {path}: {reason}") from None
    if not text.strip():
        raise SpecError(f"--service-account-key-file {path}: the file is empty")
    return text


def origin_flags(
    *,
    name: str | None,
    use: Use | None,
    endpoint: str | None,
    region: str | None,
    bucket: str | None,
    prefix: str | None,
    path_style: bool | None,
    access_key_id: str | None,
    secret_access_key_stdin: bool,
    secret_access_key_env: str | None,
    service_account_key_file: Path | None,
    base_url: str | None,
    header_name: str | None,
    header_value_stdin: bool,
    header_value_env: str | None,
    public_base_url: str | None,
) -> OriginFlags:
    if secret_access_key_stdin and header_value_stdin:
        raise SpecError("stdin holds one secret: --secret-access-key-stdin or --header-value-stdin")
    return OriginFlags(
        name=name,
        use=use,
        endpoint=endpoint,
        region=region,
        bucket=bucket,
        prefix=prefix,
        path_style=path_style,
        access_key_id=access_key_id,
        secret_access_key=read_secret(
            "secret access key",
            stdin_flag="--secret-access-key-stdin",
            from_stdin=secret_access_key_stdin,
            env_flag="--secret-access-key-env",
            env=secret_access_key_env,
        ),
        service_account_key_json=read_key_file(service_account_key_file),
        base_url=base_url,
        header_name=header_name,
        header_value=read_secret(
            "header value",
            stdin_flag="--header-value-stdin",
            from_stdin=header_value_stdin,
            env_flag="--header-value-env",
            env=header_value_env,
        ),
        public_base_url=public_base_url,
    )


def apply_flags(origin: opb.Origin, kind: Kind, flags: OriginFlags) -> None:
    """Set what the flags say on `origin` of `kind`; everything else stays as it is."""
    misplaced = [flag for flag, kinds in flags.kind_specific().items() if kind not in kinds]
    if misplaced:
        raise SpecError(f"not for --kind {kind}: {', '.join(misplaced)}")
    if flags.name is not None:
        origin.name = flags.name
    if flags.use is not None:
        origin.use = USE_VALUES[flags.use]
    if flags.public_base_url is not None:
        origin.public_base_url = flags.public_base_url
    if kind is Kind.S3:
        _apply_s3(origin.s3, flags)
        # Marks the oneof as s3 even when no s3 field was given (the server names what is
        # missing then).
        origin.s3.SetInParent()
    elif kind is Kind.GCS:
        if flags.bucket is not None:
            origin.gcs.bucket = flags.bucket
        if flags.prefix is not None:
            origin.gcs.prefix = flags.prefix
        if flags.service_account_key_json is not None:
            origin.gcs.service_account_key_json = flags.service_account_key_json
        origin.gcs.SetInParent()
    else:
        if flags.base_url is not None:
            origin.http.base_url = flags.base_url
        if flags.header_name is not None:
            origin.http.header_name = flags.header_name
        if flags.header_value is not None:
            origin.http.header_value = flags.header_value
        origin.http.SetInParent()


def _apply_s3(s3: opb.S3Origin, flags: OriginFlags) -> None:
    if flags.endpoint is not None:
        s3.endpoint_url = flags.endpoint
    if flags.region is not None:
        s3.region = flags.region
    if flags.bucket is not None:
        s3.bucket = flags.bucket
    if flags.prefix is not None:
        s3.prefix = flags.prefix
    if flags.path_style is not None:
        s3.path_style = flags.path_style
    if flags.access_key_id is not None:
        s3.access_key_id = flags.access_key_id
    if flags.secret_access_key is not None:
        s3.secret_access_key = flags.secret_access_key


def kind_of(origin: opb.Origin) -> Kind | None:
    which = origin.WhichOneof("kind")
    return Kind(which) if which else None


def clear_output_only(origin: opb.Origin) -> None:
    """Answers' output-only fields, so an origin read back is sent as a request would be."""
    origin.ClearField("create_time")
    origin.ClearField("update_time")
    if origin.HasField("s3"):
        origin.s3.ClearField("secret_access_key_fingerprint")
    if origin.HasField("gcs"):
        origin.gcs.ClearField("service_account_key_fingerprint")
    if origin.HasField("http"):
        origin.http.ClearField("header_value_fingerprint")
