"""`kiln keys ...` and `kiln create-key`: API keys, made, listed and revoked on the database."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from .common import EXIT_API, json_line, print_json, stderr, stdout
from .server_side import read_server_settings, refusing, with_store

if TYPE_CHECKING:
    from server.config import Settings

DEFAULT_ORGANIZATION = "org_default"

app = typer.Typer(
    help="API keys: an admin operation on the database (KILN_DATABASE_URL), not over the network.",
    no_args_is_help=True,
)

OrgOption = Annotated[str, typer.Option("--org", help="Organization id (created if new).")]
NameOption = Annotated[str, typer.Option("--name", help="What the key is for.")]


def create_key(org: OrgOption = DEFAULT_ORGANIZATION, name: NameOption = "") -> None:
    """Create an API key for an organization (the key is the last line of stdout)."""
    keys_create(org, name)


@app.command("create")
def keys_create(org: OrgOption = DEFAULT_ORGANIZATION, name: NameOption = "") -> None:
    """Create an API key; the key is shown once, as the last line of stdout."""

    def run() -> None:
        settings = read_server_settings()
        key, key_id = asyncio.run(_create_key_with_id(settings, org, name))
        stderr.print(f"created {key_id} for organization {org}", markup=False)
        print(key, flush=True)

    refusing(run)


async def create_api_key(settings: Settings, organization: str, name: str) -> str:
    return (await _create_key_with_id(settings, organization, name))[0]


async def _create_key_with_id(settings: Settings, organization: str, name: str) -> tuple[str, str]:
    from server.store.migrate import migrate
    from server.store.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.effective_database_url)
    store = Store(settings.effective_database_url)
    try:
        async with store.transaction() as tx:
            await tx.keys.ensure_organization(organization)
            key = await tx.keys.create_api_key(organization, name)
            return key, await tx.keys.api_key_id(key) or ""
    finally:
        await store.close()


@app.command("list")
def keys_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list.")] = False,
) -> None:
    """List API keys: organization, key id, name, created (never the keys themselves)."""

    def run() -> None:
        settings = read_server_settings()
        rows = asyncio.run(with_store(settings, lambda tx: tx.keys.list_api_keys(org)))
        if as_json:
            print_json(
                [
                    {
                        "organization_id": row.organization_id,
                        "id": row.id,
                        "name": row.name,
                        "create_time": row.created_at.isoformat(),
                    }
                    for row in rows
                ]
            )
            return
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for column in ("ORGANIZATION", "KEY ID", "NAME", "CREATED"):
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(
                row.organization_id,
                row.id,
                row.name,
                row.created_at.replace(microsecond=0).isoformat(),
            )
        stdout.print(table)

    refusing(run)


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (key_...) from `kiln keys list`.")],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"revoked": ...}.')] = False,
) -> None:
    """Revoke a key: it stops authenticating on every server within seconds."""

    def run() -> None:
        settings = read_server_settings()
        revoked = asyncio.run(with_store(settings, lambda tx: tx.keys.revoke_api_key(key_id)))
        if as_json:
            json_line({"id": key_id, "revoked": revoked})
        if not revoked:
            stderr.print(f"kiln: error: not_found: no API key {key_id}", markup=False)
            raise typer.Exit(EXIT_API)
        if not as_json:
            stdout.print(f"revoked {key_id}")

    refusing(run)
