"""Migrated databases for tests, copied from one migrated once per test process.

Running every migration on each test's new database cost about half a second of CPU per
database (a third of a server start, measured with py-spy), and the suite makes hundreds. The
template is made by the real migrations (`server.store.migrate.migrate`), once per process and
database kind; a test's database is then a copy of it: the SQLite file copied, a PostgreSQL
database created with `TEMPLATE`. A server started on such a database finds it at the head
revision and migrates nothing; servers given a database of their own still migrate it.
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg

from server.store.migrate import migrate

_lock = threading.Lock()
# This process's templates: "sqlite" -> the file's path, "postgres" -> the database's name.
_templates: dict[str, str] = {}


def make_migrated(database_url: str, postgres_admin: str) -> None:
    """Gives the new, empty database at `database_url` the migrated schema."""
    if database_url.startswith("sqlite:///"):
        target = Path(database_url.removeprefix("sqlite:///"))
        shutil.copyfile(_sqlite_template_file(), target)
        return
    name = database_url.rsplit("/", 1)[1]
    template = _postgres_template_name(database_url, postgres_admin)
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _sqlite_template_file() -> Path:
    with _lock:
        if "sqlite" not in _templates:
            folder = Path(tempfile.mkdtemp(prefix="kiln-template-"))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "template.db"
            migrate(f"sqlite:///{path}")
            # Everything in the one file: a copy must not miss pages left in a WAL.
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _templates["sqlite"] = str(path)
        return Path(_templates["sqlite"])


def _postgres_template_name(database_url: str, postgres_admin: str) -> str:
    with _lock:
        if "postgres" not in _templates:
            name = f"kiln_template_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(postgres_admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            atexit.register(_drop, name, postgres_admin)
            migrate(f"{database_url.rsplit('/', 1)[0]}/{name}")
            _templates["postgres"] = name
        return _templates["postgres"]


def _drop(name: str, postgres_admin: str) -> None:
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
