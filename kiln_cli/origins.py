"""`kiln origins ...`: the organization's own storage (OriginService): create, get, list,
update, delete.

Secrets are never taken as a flag's value (`origin_flags.py` reads them from stdin, from an
environment variable the flag names, or from a file). Answers carry a fingerprint in their
place, and that is all `origin_display.py` prints.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from kiln.v1 import origin_service_pb2 as opb

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
from .origin_display import show_origin, show_origin_page
from .origin_flags import apply_flags, clear_output_only, kind_of, origin_flags
from .origin_options import (
    AccessKeyIdOption,
    BaseUrlOption,
    BucketOption,
    EndpointOption,
    HeaderNameOption,
    HeaderValueEnvOption,
    HeaderValueStdinOption,
    KindOption,
    NameOption,
    PathStyleOption,
    PrefixOption,
    PublicBaseUrlOption,
    RegionOption,
    SecretAccessKeyEnvOption,
    SecretAccessKeyStdinOption,
    ServiceAccountKeyFileOption,
    UseOption,
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

OriginId = Annotated[str, typer.Argument(help="The origin id (ori_...).")]


def _show_answer(payload: dict[str, Any], answer: Any, as_json: bool) -> None:
    if as_json:
        print_json(payload)
    else:
        show_origin(parse(payload, answer).origin)


def _get(client: Client, origin_id: str) -> tuple[dict[str, Any], opb.Origin]:
    payload = client.call(ORIGIN_SERVICE, "GetOrigin", opb.GetOriginRequest(id=origin_id))
    return payload, parse(payload, opb.GetOriginResponse).origin


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
    show_origin_page(parse(payload, opb.ListOriginsResponse))


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
        clear_output_only(origin)
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
