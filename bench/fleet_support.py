"""Processes and databases both fleet benchmarks (dispatch_latency, soak) set up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
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


class PubSubFakeProcess:
    """`python -m tests.pubsub_fake --port 0` as a process; its address once it listens."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.pubsub_fake", "--port", "0"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        self.host = ""
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if match := re.search(r"listening on (\S+)", line):
                self.host = match.group(1)
                break
        if not self.host:
            self.stop()
            raise RuntimeError("the Pub/Sub fake did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
