"""What the server-side commands share: settings read with logging set up, an unsafe setting
refused before anything runs, and a store opened for one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from .common import EXIT_USAGE, stderr

if TYPE_CHECKING:
    # Imported where used: the client commands never load the server's settings, whose
    # Pub/Sub backend alone costs a third of a second per invocation.
    from server.config import Settings
    from worker.settings import WorkerSettings


def _setup_logging(log_level: str) -> None:
    from common.log_setup import configure_logging

    configure_logging(log_level)


def read_server_settings() -> Settings:
    from server.config import load_settings

    settings = load_settings()
    _setup_logging(settings.log_level)
    return settings


def read_worker_settings() -> WorkerSettings:
    from server.config import UnsafeConfiguration
    from worker.settings import load_worker_settings

    settings = load_worker_settings()
    _setup_logging(settings.log_level)
    if settings.dispatch not in ("db", "pubsub"):
        raise UnsafeConfiguration(
            f"KILN_DISPATCH={settings.dispatch!r} is not a dispatch backend: use db or pubsub"
        )
    return settings


def refusing(run: Callable[[], None]) -> None:
    """A server-side command: an unsafe configuration, or a KILN_* value the variable
    cannot take, exits 2 with why, before anything runs."""
    from common.settings_env import BadSetting
    from server.config import UnsafeConfiguration

    try:
        run()
    except (UnsafeConfiguration, BadSetting) as refused:
        stderr.print(f"kiln: refusing to start: {refused}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None


async def with_store(settings: Settings, work: Callable[[Any], Any]) -> Any:
    from server.store.migrate import migrate
    from server.store.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.effective_database_url)
    store = Store(settings.effective_database_url)
    try:
        async with store.transaction() as tx:
            return await work(tx)
    finally:
        await store.close()
