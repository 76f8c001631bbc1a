"""How `kiln origins` prints origins: where they are, and a fingerprint for the secret."""

from __future__ import annotations

from typing import Any

from kiln.v1 import origin_service_pb2 as opb
from rich.table import Table

from .common import stdout
from .origin_options import USE_NAMES


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


def show_origin_page(response: opb.ListOriginsResponse) -> None:
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
