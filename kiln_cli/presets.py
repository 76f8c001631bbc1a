"""`kiln presets ...`: create, get, list, delete (PresetService)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from kiln.v1 import job_pb2, preset_service_pb2
from rich.table import Table

from .client import PRESET_SERVICE, parse
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
from .specs import SHORTHAND_HELP, SpecError, load_spec, parse_output
from .watching import short_enum

app = typer.Typer(
    help="Saved output specs: create, get, list, delete. Exit codes as `kiln --help` says.",
    no_args_is_help=True,
)

PresetId = Annotated[str, typer.Argument(help="Preset id (pst_...) or system slug.")]


def _describe(spec: job_pb2.OutputSpec) -> str:
    what = short_enum(job_pb2.OutputType, spec.type, "OUTPUT_TYPE_")
    variants = ",".join(
        f"{short_enum(job_pb2.VideoCodec, v.codec, 'VIDEO_CODEC_')}:{v.resolution}"
        for v in spec.video
    )
    return f"{what} {variants}".strip()


def show_preset(preset: preset_service_pb2.Preset) -> None:
    kind = "system" if preset.system else "organization"
    stdout.print(f"[bold]{preset.id}[/]  {preset.name}  ({kind})")
    if preset.description:
        stdout.print(f"  {preset.description}", markup=False)
    stdout.print(f"  spec  {_describe(preset.spec)}", markup=False)


@app.command()
@client_command
def create(
    name: Annotated[str | None, typer.Option("--name", help="Human-readable name.")] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help=f"The spec: {SHORTHAND_HELP}.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec", help="A Preset (name, description, spec) as JSON or YAML; flags override."
        ),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Save an output spec as a preset (pst_...)."""
    preset = load_spec(spec, preset_service_pb2.Preset) if spec else preset_service_pb2.Preset()
    if name:
        preset.name = name
    if description:
        preset.description = description
    if output:
        preset.spec.CopyFrom(parse_output(output))
    if not preset.name:
        raise SpecError("no name: pass --name (or name in --spec)")
    if not preset.HasField("spec"):
        raise SpecError("no spec: pass --output (or spec in --spec)")
    _preset_call(
        url,
        api_key,
        "CreatePreset",
        preset_service_pb2.CreatePresetRequest(preset=preset),
        preset_service_pb2.CreatePresetResponse,
        as_json,
    )


def _preset_call(
    url: str, api_key: str | None, method: str, request: Any, answer: Any, as_json: bool
) -> None:
    """One PresetService call whose answer carries a preset: printed as JSON or shown."""
    with connect(url, api_key) as client:
        payload = client.call(PRESET_SERVICE, method, request)
    if as_json:
        print_json(payload)
    else:
        show_preset(parse(payload, answer).preset)


@app.command()
@client_command
def get(
    preset_id: PresetId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one preset."""
    _preset_call(
        url,
        api_key,
        "GetPreset",
        preset_service_pb2.GetPresetRequest(id=preset_id),
        preset_service_pb2.GetPresetResponse,
        as_json,
    )


@app.command("list")
@client_command
def list_presets(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 50,
    page_token: Annotated[str | None, typer.Option("--page-token")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List system presets and the organization's own."""
    request = preset_service_pb2.ListPresetsRequest(page_size=limit, page_token=page_token or "")
    with connect(url, api_key) as client:
        payload = client.call(PRESET_SERVICE, "ListPresets", request)
    if as_json:
        print_json(payload)
        return
    response = parse(payload, preset_service_pb2.ListPresetsResponse)
    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True)
    for column in ("NAME", "KIND", "SPEC"):
        table.add_column(column)
    for preset in response.presets:
        table.add_row(
            preset.id,
            preset.name,
            "system" if preset.system else "organization",
            _describe(preset.spec),
        )
    stdout.print(table)
    if response.next_page_token:
        stdout.print(f"more: kiln presets list --page-token {response.next_page_token}")


@app.command()
@client_command
def delete(
    preset_id: PresetId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete one of the organization's presets."""
    with connect(url, api_key) as client:
        payload = client.call(
            PRESET_SERVICE, "DeletePreset", preset_service_pb2.DeletePresetRequest(id=preset_id)
        )
    if as_json:
        print_json(payload)
    else:
        stdout.print(f"deleted {preset_id}")
