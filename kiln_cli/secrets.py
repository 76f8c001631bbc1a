"""`kiln secrets ...`: the key that seals origins' credentials at rest (KILN_SECRETS_KEY).

`new-key` prints a new key value. `rotate` is a server-side command, run next to the database
like `kiln migrate`: with the new key as KILN_SECRETS_KEY and the old one in
KILN_SECRETS_KEYS_PREVIOUS, it seals every stored credential again with the new key, after
which the old key can be dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from .common import EXIT_USAGE, fail, print_json, stderr, stdout
from .server_side import read_server_settings, refusing, with_store

if TYPE_CHECKING:
    from server.config import Settings
    from server.secrets_keyring import SecretsKeyring
    from server.store.store import Tx

app = typer.Typer(
    help=(
        "The key that encrypts origins' credentials (KILN_SECRETS_KEY): new-key, rotate. "
        "rotate runs on the database (KILN_DATABASE_URL), not over the network."
    ),
    no_args_is_help=True,
)


@app.command("new-key")
def new_key(
    key_id: Annotated[
        str | None,
        typer.Option(
            "--key-id",
            help="The key's id (1-32 letters, digits, - or _); today's date and a random "
            "suffix by default.",
        ),
    ] = None,
) -> None:
    """Print a new KILN_SECRETS_KEY value (alone on stdout: KEY=$(kiln secrets new-key))."""
    from server.secrets_keyring import SecretsKeyError, generate_secrets_key

    try:
        value = generate_secrets_key(key_id)
    except SecretsKeyError as refused:
        fail(EXIT_USAGE, f"usage error: --key-id: {refused}")
    stderr.print(
        "Set it as KILN_SECRETS_KEY on every server; when it replaces a key, move the old "
        "value to KILN_SECRETS_KEYS_PREVIOUS and run `kiln secrets rotate`.",
        markup=False,
    )
    print(value, flush=True)


@dataclass(frozen=True)
class RotationCounts:
    key_id: str
    resealed: int
    already_current: int
    # Changed by an UpdateOrigin between the read and the write: that one sealed it anew.
    changed_meanwhile: int


class UnreadableSecret(Exception):
    """A stored credential none of the configured keys opens; nothing was re-sealed."""


@app.command()
def rotate(
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Seal every stored origin credential with KILN_SECRETS_KEY (the current key).

    Servers first: new key as KILN_SECRETS_KEY, old one in KILN_SECRETS_KEYS_PREVIOUS.
    """

    def run() -> None:
        settings = read_server_settings()
        keyring = _keyring(settings)
        try:
            counts = asyncio.run(with_store(settings, lambda tx: _reseal_all(tx, keyring)))
        except UnreadableSecret as unreadable:
            fail(EXIT_USAGE, f"error: {unreadable}; nothing was re-sealed")
        if as_json:
            print_json(asdict(counts))
            return
        changed = (
            f"; {counts.changed_meanwhile} changed meanwhile (sealed anew by that change)"
            if counts.changed_meanwhile
            else ""
        )
        stdout.print(
            f"re-sealed {counts.resealed} with key {counts.key_id}; "
            f"{counts.already_current} already current{changed}",
            markup=False,
        )

    refusing(run)


def _keyring(settings: Settings) -> SecretsKeyring:
    """The keyring the servers build from the same settings."""
    from server.secrets_keyring import load_keyring

    return load_keyring(
        {
            "KILN_SECRETS_KEY": settings.secrets_key,
            "KILN_SECRETS_KEYS_PREVIOUS": settings.previous_secrets_keys,
        },
        settings.data_dir,
    )


async def _reseal_all(tx: Tx, keyring: SecretsKeyring) -> RotationCounts:
    """Every stored secret not sealed with the current key, sealed again with it. In the
    caller's one transaction: a secret that does not open leaves every row as it was."""
    from server.origins.directory import secret_context
    from server.secrets_keyring import SecretUnreadable

    resealed = already_current = changed_meanwhile = 0
    for origin_id, organization_id, token in await tx.origins.all_sealed_secrets():
        try:
            if not keyring.needs_rotation(token):
                already_current += 1
                continue
            new_token = keyring.reseal(token, context=secret_context(origin_id, organization_id))
        except SecretUnreadable as error:
            raise UnreadableSecret(
                f"the secret of origin {origin_id} cannot be opened with KILN_SECRETS_KEY or "
                f"KILN_SECRETS_KEYS_PREVIOUS ({error})"
            ) from None
        if await tx.origins.reseal_origin_secret(origin_id, token, new_token):
            resealed += 1
        else:
            changed_meanwhile += 1
    return RotationCounts(keyring.current_key_id, resealed, already_current, changed_meanwhile)
