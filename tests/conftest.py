"""Fixtures shared by every layer: databases (SQLite and the real PostgreSQL) and media."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

POSTGRES_ADMIN = os.environ.get(
    "KILN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# The suite starts hundreds of Python processes (servers, workers, `kiln` commands). Under
# PYTHONDONTWRITEBYTECODE (set in many CI images and shells to keep __pycache__ out of the
# tree) each of them compiled kiln's ~250 modules from source again: measured, 0.39 of a
# server start's 2.16 CPU-seconds and 0.15 of a worker's 0.86. Those processes inherit this
# environment: they write and reuse bytecode in a folder of its own outside the tree instead
# (keyed by each source's full path and checked against its size and time, so worktrees and
# concurrent sessions share it safely; files are replaced atomically).
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "kiln-tests-pycache")
    )


# The longest modules (measured: summed test time per module), started first in this order
# (see pytest_collection_modifyitems).
LONGEST_MODULES = (
    "tests/e2e/test_fleet.py",
    "tests/e2e/test_partitions.py",
    "tests/e2e/test_dashboard.py",
    "tests/e2e/test_players.py",
    "tests/e2e/test_chunked.py",
    "tests/e2e/test_chunked_live.py",
    "tests/e2e/test_outputs.py",
    "tests/e2e/test_first_minutes.py",
    "tests/e2e/test_broker_restart.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long modules first, short ones last. `make test` runs several processes that each take
    whole modules in collection order (`--dist loadfile`): a long module collected late ran
    alone at the end while the other processes sat idle. End-to-end modules go first (the
    longest, LONGEST_MODULES, before all), then integration, then the unit tests, which fill
    the gaps at the end. The order inside a module is kept (the sort is stable)."""

    def weight(item: pytest.Item) -> tuple[int, int]:
        path = item.path.as_posix()
        layer = 0 if "/tests/e2e/" in path else 1 if "/tests/integration/" in path else 2
        longest = [i for i, module in enumerate(LONGEST_MODULES) if path.endswith(module)]
        return (layer, longest[0] if longest else len(LONGEST_MODULES))

    items.sort(key=weight)


def _postgres_base() -> str:
    return POSTGRES_ADMIN.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """The PostgreSQL half of the suite fails, never skips, when the server is unreachable."""
    try:
        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=5):
            pass
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN} is unreachable: {error}")


def create_postgres_database() -> str:
    name = f"kiln_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{_postgres_base()}/{name}"


def migrated(database_url: str) -> str:
    """`database_url`, its new empty database given the migrated schema (tests/support/
    template_db.py: a copy, not the migrations run again)."""
    from tests.support.template_db import make_migrated

    make_migrated(database_url, POSTGRES_ADMIN)
    return database_url


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory):
    """A fresh, empty database of each kind; one per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'kiln.db'}"
        return
    request.getfixturevalue("postgres_available")
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def make_clip(
    path: Path,
    *,
    seconds: float,
    size: str = "640x360",
    rate: int = 30,
    audio: bool = True,
    preset: str = "ultrafast",
) -> Path:
    """A synthetic test clip made by FFmpeg's lavfi sources."""
    path.parent.mkdir(parents=True, exist_ok=True)
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    command += ["-t", str(seconds), "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"]
    command += ["-c:a", "aac"] if audio else []
    command += [str(path)]
    subprocess.run(command, check=True)
    return path


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    """The input root the e2e servers allow; holds the shared synthetic clips."""
    root = tmp_path_factory.mktemp("media")
    make_clip(root / "clip2s.mp4", seconds=2)
    return root


# SeaweedFS: a real S3 server (tests/support/seaweedfs.py).


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory):
    """One SeaweedFS S3 server (`weed mini`) for the session, started the first time a test
    asks for it and never otherwise.

    Cost: about 0.8 s to start and 1.1 s to stop on a 2-core machine, ~130 MB of memory,
    ten loopback ports, and a request log (one line per request, a few per GET) in its
    folder. Identities: `admin_keys`, `readonly_keys`; `wrong_keys` are unknown to it. A test
    that stops it must start() it again (same ports, same data) before it ends; buckets and
    objects persist across the session, so use names of your own.
    """
    from tests.support.seaweedfs import SeaweedS3

    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# Google's Pub/Sub emulator (tests/support/pubsub_emulator.py).


@pytest.fixture(scope="module")
def pubsub_emulator(tmp_path_factory):
    """Google's official Pub/Sub emulator, one per test module that asks for it.

    Cost: about 3 s to start and 1.5 s to stop, ~100 MB of memory, one loopback port.
    Topics and subscriptions live as long as the module: give each test a project or topic
    prefix of its own. Without the emulator the test fails (never skips), saying what to
    install.
    """
    from tests.support.pubsub_emulator import running_emulator

    with running_emulator(tmp_path_factory.mktemp("pubsub-emulator")) as emulator:
        yield emulator
