"""Fresh PostgreSQL databases for the benchmarks that run kiln fleets (where one dispatches
through Pub/Sub, it starts Google's emulator: tests/support/pubsub_emulator.py)."""

from __future__ import annotations

import os
import uuid

import psycopg

POSTGRES_ADMIN = os.environ.get(
    "KILN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def create_database(prefix: str) -> str:
    """A fresh PostgreSQL database, named `prefix` + a random suffix; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_ADMIN.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
