"""Apply Alembic migrations; used by `kiln migrate` and on server start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from .store import sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(database_url))
    return config


def migrate(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")
