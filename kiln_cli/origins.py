"""`kiln origins ...`: the organization's own storage (OriginService): create, get, list,
update, delete.

Secrets (an S3 secret access key, a GCS service-account key, an HTTP header value) are never
taken as a flag's value, which would land in shell history and in `ps` for every user of the
machine: they are read from stdin, from an environment variable the flag names, or from a
file. Answers carry a fingerprint in their place, and that is all this module prints.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from kiln.v1 import origin_service_pb2 as opb
from rich.table import Table

from .client import Client, parse
from .common import (
    DEFAULT_URL,
    ApiKeyOption,
    JsonOption,
    UrlOption,
    client_command,
    connect,
    print_json,
    stdout,
)
from .specs import SpecError

ORIGIN_SERVICE = "kiln.v1.OriginService"

app = typer.Typer(
    help=(
        "The organization's storage for job inputs and outputs (S3, GCS, HTTP): create, get, "
        "list, update, delete. Exit codes as `kiln --help` says."
    ),
    no_args_is_help=True,
)


class Kind(StrEnum):
    S3 = "s3"
    GCS = "gcs"
    HTTP = "http"


class Use(StrEnum):
    INPUT = "input"
    OUTPUT = "output"
    BOTH = "both"


USE_VALUES = {
    Use.INPUT: opb.ORIGIN_USE_INPUT,
    Use.OUTPUT: opb.ORIGIN_USE_OUTPUT,
    Use.BOTH: opb.ORIGIN_USE_INPUT_AND_OUTPUT,
}
USE_NAMES = {value: use.value for use, value in USE_VALUES.items()}

OriginId = Annotated[str, typer.Argument(help="The origin id (ori_...).")]

# The options create and update share. On update an option left out keeps the stored value,
# and '' clears a text field (--prefix '').
NameOption = Annotated[str | None, typer.Option("--name", help="A name for people.")]
KindOption = Annotated[Kind | None, typer.Option("--kind", help="What kind of storage it is.")]
UseOption = Annotated[
    Use | None,
    typer.Option(
        "--use",
        help="What jobs may do with it (server default: both for buckets, input for http).",
    ),
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="s3: https://host[:port] of the store; AWS S3 when empty."),
]
RegionOption = Annotated[
    str | None,
    typer.Option("--region", help="s3: the signing region (us-east-1 when empty, auto for R2)."),
]
BucketOption = Annotated[str | None, typer.Option("--bucket", help="s3, gcs: the bucket.")]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="s3, gcs: objects are kept under this prefix.")
]
PathStyleOption = Annotated[
    bool | None,
    typer.Option(
        "--path-style/--virtual-hosted",
        help="s3: https://host/bucket/key addressing (MinIO, SeaweedFS need it).",
        show_default=False,
    ),
]
AccessKeyIdOption = Annotated[
    str | None, typer.Option("--access-key-id", help="s3: the access key id.")
]
SecretAccessKeyStdinOption = Annotated[
    bool,
    typer.Option(
        "--secret-access-key-stdin",
        help="s3: read the secret access key from stdin (prompted for on a terminal).",
    ),
]
SecretAccessKeyEnvOption = Annotated[
    str | None,
    typer.Option(
        "--secret-access-key-env",
        metavar="VAR",
        help="s3: read the secret access key from this environment variable.",
    ),
]
ServiceAccountKeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--service-account-key-file",
        help="gcs: a service-account key (JSON); the server's own credentials without it.",
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option("--base-url", help="http: an http(s) URL that input paths are appended to."),
]
HeaderNameOption = Annotated[
    str | None,
    typer.Option("--header-name", help="http: a header sent with every read (Authorization)."),
]
HeaderValueEnvOption = Annotated[
    str | None,
    typer.Option(
        "--header-value-env",
        metavar="VAR",
        help="http: read the header's value from this environment variable.",
    ),
]
HeaderValueStdinOption = Annotated[
    bool,
    typer.Option(
        "--header-value-stdin",
        help="http: read the header's value from stdin (prompted for on a terminal).",
    ),
]
PublicBaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--public-base-url",
        help="A CDN or public URL serving the bucket's objects by name, for playback URLs.",
    ),
]


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


def use_name(origin: opb.Origin) -> str:
    return USE_NAMES.get(origin.use, "-")


def where(origin: opb.Origin) -> str:
    """Where the objects are, in one line: a bucket URL (and its store) or a base URL."""
    kind = origin.WhichOneof("kind")
    if kind == "s3":
        s3 = origin.s3
        place = f"s3://{s3.bucket}/{s3.prefix}".rstrip("/")
        store = s3.endpoint_url or f"AWS {s3.region or 'us-east-1'}"
        style = ", path-style" if s3.path_style else ""
        return f"{place} ({store}{style})"
    if kind == "gcs":
        return f"gs://{origin.gcs.bucket}/{origin.gcs.prefix}".rstrip("/")
    if kind == "http":
        return origin.http.base_url
    return "-"


def fingerprint(origin: opb.Origin) -> str:
    """What tells the stored secret apart (never the secret itself)."""
    kind = origin.WhichOneof("kind")
    if kind == "s3":
        return origin.s3.secret_access_key_fingerprint or "-"
    if kind == "gcs":
        return origin.gcs.service_account_key_fingerprint or "server credentials"
    if kind == "http" and origin.http.header_name:
        return f"{origin.http.header_name}: {origin.http.header_value_fingerprint or '-'}"
    return "-"


def _time(stamp: Any) -> str:
    if not stamp.seconds:
        return "-"
    return str(stamp.ToDatetime().replace(microsecond=0)) + "Z"


def show_origin(origin: opb.Origin) -> None:
    kind = origin.WhichOneof("kind") or "no kind"
    stdout.print(f"[bold]{origin.id}[/]  ", end="")
    stdout.print(f"{origin.name}  ({kind}, {use_name(origin)})", markup=False)
    stdout.print(f"  where        {where(origin)}", markup=False)
    if kind == "s3":
        stdout.print(f"  access key   {origin.s3.access_key_id}", markup=False)
    stdout.print(f"  secret       {fingerprint(origin)}", markup=False)
    if origin.public_base_url:
        stdout.print(f"  public url   {origin.public_base_url}", markup=False)
    stdout.print(f"  created      {_time(origin.create_time)}  updated {_time(origin.update_time)}")


def _show_answer(payload: dict[str, Any], answer: Any, as_json: bool) -> None:
    if as_json:
        print_json(payload)
    else:
        show_origin(parse(payload, answer).origin)


def _get(client: Client, origin_id: str) -> tuple[dict[str, Any], opb.Origin]:
    payload = client.call(ORIGIN_SERVICE, "GetOrigin", opb.GetOriginRequest(id=origin_id))
    return payload, parse(payload, opb.GetOriginResponse).origin


def _clear_output_only(origin: opb.Origin) -> None:
    """Answers' output-only fields, so an origin read back is sent as a request would be."""
    origin.ClearField("create_time")
    origin.ClearField("update_time")
    if origin.HasField("s3"):
        origin.s3.ClearField("secret_access_key_fingerprint")
    if origin.HasField("gcs"):
        origin.gcs.ClearField("service_account_key_fingerprint")
    if origin.HasField("http"):
        origin.http.ClearField("header_value_fingerprint")


@app.command()
@client_command
def create(
    name: NameOption = None,
    kind: KindOption = None,
    use: UseOption = None,
    endpoint: EndpointOption = None,
    region: RegionOption = None,
    bucket: BucketOption = None,
    prefix: PrefixOption = None,
    path_style: PathStyleOption = None,
    access_key_id: AccessKeyIdOption = None,
    secret_access_key_stdin: SecretAccessKeyStdinOption = False,
    secret_access_key_env: SecretAccessKeyEnvOption = None,
    service_account_key_file: ServiceAccountKeyFileOption = None,
    base_url: BaseUrlOption = None,
    header_name: HeaderNameOption = None,
    header_value_env: HeaderValueEnvOption = None,
    header_value_stdin: HeaderValueStdinOption = False,
    public_base_url: PublicBaseUrlOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check and save an origin (ori_...); nothing is saved when the server cannot use it.

    kiln origins create --name in --kind s3 --bucket in --access-key-id ID --secret-access-key-stdin
    """
    if not name:
        raise SpecError("no name: pass --name")
    if kind is None:
        raise SpecError("no kind: pass --kind s3, gcs or http")
    flags = origin_flags(
        name=name,
        use=use,
        endpoint=endpoint,
        region=region,
        bucket=bucket,
        prefix=prefix,
        path_style=path_style,
        access_key_id=access_key_id,
        secret_access_key_stdin=secret_access_key_stdin,
        secret_access_key_env=secret_access_key_env,
        service_account_key_file=service_account_key_file,
        base_url=base_url,
        header_name=header_name,
        header_value_stdin=header_value_stdin,
        header_value_env=header_value_env,
        public_base_url=public_base_url,
    )
    origin = opb.Origin()
    apply_flags(origin, kind, flags)
    with connect(url, api_key) as client:
        payload = client.call(
            ORIGIN_SERVICE, "CreateOrigin", opb.CreateOriginRequest(origin=origin)
        )
    _show_answer(payload, opb.CreateOriginResponse, as_json)


@app.command()
@client_command
def get(
    origin_id: OriginId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one origin (its secret as a fingerprint)."""
    with connect(url, api_key) as client:
        payload, _ = _get(client, origin_id)
    _show_answer(payload, opb.GetOriginResponse, as_json)


@app.command("list")
@client_command
def list_origins(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 50,
    page_token: Annotated[str | None, typer.Option("--page-token")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the organization's origins, oldest first."""
    request = opb.ListOriginsRequest(page_size=limit, page_token=page_token or "")
    with connect(url, api_key) as client:
        payload = client.call(ORIGIN_SERVICE, "ListOrigins", request)
    if as_json:
        print_json(payload)
        return
    response = parse(payload, opb.ListOriginsResponse)
    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True)
    for column in ("NAME", "KIND", "USE", "WHERE", "FINGERPRINT"):
        table.add_column(column)
    for origin in response.origins:
        table.add_row(
            origin.id,
            origin.name,
            origin.WhichOneof("kind") or "-",
            use_name(origin),
            where(origin),
            fingerprint(origin),
        )
    stdout.print(table)
    if response.next_page_token:
        stdout.print(f"more: kiln origins list --page-token {response.next_page_token}")


@app.command()
@client_command
def update(
    origin_id: OriginId,
    name: NameOption = None,
    kind: KindOption = None,
    use: UseOption = None,
    endpoint: EndpointOption = None,
    region: RegionOption = None,
    bucket: BucketOption = None,
    prefix: PrefixOption = None,
    path_style: PathStyleOption = None,
    access_key_id: AccessKeyIdOption = None,
    secret_access_key_stdin: SecretAccessKeyStdinOption = False,
    secret_access_key_env: SecretAccessKeyEnvOption = None,
    service_account_key_file: ServiceAccountKeyFileOption = None,
    base_url: BaseUrlOption = None,
    header_name: HeaderNameOption = None,
    header_value_env: HeaderValueEnvOption = None,
    header_value_stdin: HeaderValueStdinOption = False,
    public_base_url: PublicBaseUrlOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an origin's settings: flags left out keep theirs, and the stored secret stays.

    Checked again like create. kiln origins update ori_... --prefix renditions/2027
    """
    flags = origin_flags(
        name=name,
        use=use,
        endpoint=endpoint,
        region=region,
        bucket=bucket,
        prefix=prefix,
        path_style=path_style,
        access_key_id=access_key_id,
        secret_access_key_stdin=secret_access_key_stdin,
        secret_access_key_env=secret_access_key_env,
        service_account_key_file=service_account_key_file,
        base_url=base_url,
        header_name=header_name,
        header_value_stdin=header_value_stdin,
        header_value_env=header_value_env,
        public_base_url=public_base_url,
    )
    with connect(url, api_key) as client:
        # UpdateOrigin replaces every field: send the stored origin back with the flags'
        # changes. Its secret comes back empty, which keeps the stored one.
        _, origin = _get(client, origin_id)
        stored_kind = kind_of(origin)
        if stored_kind is None:
            raise SpecError(f"origin {origin_id} has a kind this kiln does not know")
        if kind is not None and kind is not stored_kind:
            raise SpecError(f"an origin's kind stays: {origin_id} is {stored_kind}, not {kind}")
        apply_flags(origin, stored_kind, flags)
        _clear_output_only(origin)
        payload = client.call(
            ORIGIN_SERVICE, "UpdateOrigin", opb.UpdateOriginRequest(origin=origin)
        )
    _show_answer(payload, opb.UpdateOriginResponse, as_json)


@app.command()
@client_command
def delete(
    origin_id: OriginId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an origin; refused while jobs read from it or have output files on it."""
    with connect(url, api_key) as client:
        payload = client.call(ORIGIN_SERVICE, "DeleteOrigin", opb.DeleteOriginRequest(id=origin_id))
    if as_json:
        print_json(payload)
    else:
        stdout.print(f"deleted {origin_id}")
