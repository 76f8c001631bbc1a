"""A PostgreSQL server of a test's own, to stop and start under a running cluster.

The machine's shared server (127.0.0.1:5432) serves every other test in parallel, so a test
that restarts the database gets its own: the same PostgreSQL binaries, a fresh `initdb`
(about a second) in a folder of its own under the system's temporary folder (pytest's are
closed to other users), trust auth on a free loopback port. PostgreSQL refuses to run as
root, so when the suite runs as root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType


def _binaries() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise RuntimeError("PostgreSQL's server binaries are not installed (/usr/lib/postgresql)")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """`with PrivatePostgres() as pg:` a running server; `pg.stop()`/`pg.start()` take it
    away and bring it back on the same port with the same data."""

    def __init__(self, listen_on: str = "") -> None:
        """`listen_on`: one more address to listen on besides loopback (e.g. a test LAN's),
        whose /24 is let in with trust auth too."""
        self.listen_on = listen_on
        self.folder = Path(tempfile.mkdtemp(prefix="kiln-postgres-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.bin = _binaries()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run(
            [*prefix, *command],
            cwd=self.folder,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def __enter__(self) -> PrivatePostgres:
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        if self.listen_on:
            network = self.listen_on.rsplit(".", 1)[0] + ".0/24"
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {network} trust\n")
        self.start()
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} "
            f"-c listen_addresses={','.join(filter(None, ['127.0.0.1', self.listen_on]))} "
            "-c fsync=off -c synchronous_commit=off"
        )
        log = self.folder / "postgres.log"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(log),
                  "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast", wait_seconds: int = 60) -> None:
        """A fast shutdown: open sessions are terminated, as in a restart or failover
        (`mode="immediate"`: as in a crash). Not stopped within `wait_seconds`:
        CalledProcessError, the server still running."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "-t", str(wait_seconds), "stop", timeout=wait_seconds + 30)  # fmt: skip

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Already stopped by the test is fine.
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                      "stop")  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)
