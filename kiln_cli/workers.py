"""`kiln workers list`: the fleet as the workers announced themselves, read from the database
(KILN_DATABASE_URL) next to the servers, like `kiln keys`: an operator's view, not an
organization's, so it is not on the public API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import print_json, stdout
from .server_side import read_server_settings, refusing, with_store

if TYPE_CHECKING:
    from server.jobs.fleet import FleetMember

app = typer.Typer(
    help="The workers of the fleet: what each announced, what it runs, when it was last heard "
    "from. Reads the database (KILN_DATABASE_URL), not over the network.",
    no_args_is_help=True,
)


@app.command("list")
def list_workers(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list.")] = False,
) -> None:
    """List workers: id, host, state (ACTIVE, DRAINING, LOST), running/slots, last contact."""
    from server.jobs.fleet import judged

    def run() -> None:
        settings = read_server_settings()

        async def read(tx: Any) -> list[FleetMember]:
            return judged(await tx.workers.list_workers(), settings.lease_seconds)

        members = asyncio.run(with_store(settings, read))
        if as_json:
            print_json([_as_json(member) for member in members])
            return
        _print_table(members)

    refusing(run)


def _as_json(member: FleetMember) -> dict[str, Any]:
    record = member.record
    return {
        "id": record.id,
        "host": record.host,
        "state": member.state,
        "version": record.version,
        "capacity": record.capacity,
        "running_tasks": record.running_tasks,
        "task_kinds": record.task_kinds,
        "encoders": record.encoders,
        # Media seconds per wall second of its recent tasks, per kind of output (the ETA's).
        "speeds": record.speeds,
        "start_time": record.started_at.isoformat(),
        "last_contact_time": record.last_contact_at.isoformat(),
    }


def _print_table(members: list[FleetMember]) -> None:
    from rich.table import Table

    moment = datetime.now(UTC)
    table = Table(box=None, header_style="bold")
    for column in ("WORKER", "HOST", "STATE", "RUNNING", "LAST CONTACT", "VERSION"):
        table.add_column(column, no_wrap=True)
    for member in members:
        record = member.record
        silent = max((moment - record.last_contact_at).total_seconds(), 0.0)
        table.add_row(
            record.id,
            record.host,
            member.state,
            f"{record.running_tasks}/{record.capacity}",
            f"{silent:.0f} s ago",
            record.version,
        )
    stdout.print(table)
