"""Google's official Pub/Sub emulator for tests and benchmarks: found, started, stopped.

The emulator is a Java program from Google's Cloud SDK, packaged as
`google-cloud-cli-pubsub-emulator` in Google's own apt repository; neither Debian's nor
PyPI's registries carry it. Where it is looked for (the first one found wins):

1. KILN_PUBSUB_EMULATOR: the path of its `cloud-pubsub-emulator` launcher, or of `gcloud`;
2. `cloud-pubsub-emulator` on PATH;
3. where that package installs the launcher (SDK_LAUNCHER below);
4. `gcloud beta emulators pubsub start` (gcloud on PATH, with the emulator component).

Each start takes a free port on loopback (or on `listen_host`: "0.0.0.0" for clients on test
hosts of their own network namespace, as the server's worker listener does), runs in a process group of its own (the launcher
execs java; gcloud runs java as its child) so that stop() ends all of it, works in a data
folder inside a temporary folder, and is ready when its output says "Server started,
listening on PORT": that line is waited for, not slept for. Startup takes about 3 s.

Seen of this emulator (0.8.20) beside Google's service: a dead-letter policy wants
max_delivery_attempts of at least 5, as the service does; ack deadlines under 10 s are
accepted and honoured; topic and subscription ids need at least 3 characters; a Pull that
waits was answered 0.1-0.5 s after a Publish here, and returns empty a
little before its deadline (at once under 1 s); a message whose last delivery attempt was
handed back moves to the dead-letter topic only at the next Pull of its subscription;
message ids count up across the whole emulator. It keeps everything in memory.

`python -m tests.support.pubsub_emulator` starts and stops it once and says which one it
found (`make pubsub-emulator` runs it); it exits 1, saying what to install, when there is
none.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

OVERRIDE = "KILN_PUBSUB_EMULATOR"
PACKAGE = "google-cloud-cli-pubsub-emulator"
LAUNCHER = "cloud-pubsub-emulator"
SDK_LAUNCHER = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin") / LAUNCHER
MISSING = (
    f"Google's Pub/Sub emulator was not found (looked at ${OVERRIDE}, `{LAUNCHER}` on PATH, "
    f"{SDK_LAUNCHER} and `gcloud beta emulators pubsub start`). Install the package "
    f"{PACKAGE} (with a Java runtime) from Google's Cloud SDK apt repository: it is on "
    f"neither Debian's nor PyPI's registries. Or set {OVERRIDE} to its {LAUNCHER} launcher."
)
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
# A port taken between picking it and the emulator binding it: try another.
BIND_ATTEMPTS = 3

_READY = re.compile(r"Server started, listening on (\d+)")
_PORT_TAKEN = re.compile(r"BindException|Address already in use|Failed to bind")


class EmulatorMissing(RuntimeError):
    """No emulator to start on this machine; the message says what to install."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{MISSING}{f' ({detail})' if detail else ''}")


def find_command() -> list[str]:
    """How to run the emulator, before its --host/--port (or --host-port) flags."""
    override = os.environ.get(OVERRIDE, "").strip()
    if override:
        path = shutil.which(override)
        if path is None:
            raise EmulatorMissing(f"{OVERRIDE}={override!r} is not an executable")
        return _command_for(path)
    for candidate in (shutil.which(LAUNCHER), str(SDK_LAUNCHER)):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    gcloud = shutil.which("gcloud")
    if gcloud is not None:
        return _command_for(gcloud)
    raise EmulatorMissing()


def _command_for(path: str) -> list[str]:
    if Path(path).name == "gcloud":
        return [path, "beta", "emulators", "pubsub", "start"]
    return [path]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PubSubEmulator:
    """One emulator process; `host` ("127.0.0.1:PORT") is PUBSUB_EMULATOR_HOST for clients
    on this machine's loopback.

    `root` keeps its data folder and output (emulator.log); without one, a temporary
    folder that stop() removes. `listen_host` is the address it binds: loopback unless a
    client elsewhere must reach it (`reached_at` then names it for that client).
    """

    def __init__(self, root: Path | None = None, *, listen_host: str = "127.0.0.1") -> None:
        self.command = find_command()
        self.listen_host = listen_host
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="kiln-pubsub-emulator-")) if root is None else root
        self.data_dir = self.root / "data"
        self.log_path = self.root / "emulator.log"
        self.host = ""
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()  # the ready line is out, or the output ended
        self._listening = False  # the ready line is out
        self._lines: list[str] = []

    def start(self) -> None:
        """Start it and return once it listens; raises RuntimeError with its output if it
        exits or stays silent instead."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, BIND_ATTEMPTS + 1):
            port = _free_port(self.listen_host)
            if self._start_on(port):
                self.port = port
                self.host = f"127.0.0.1:{port}"
                return
            output = self.output()
            self.stop(remove=False)
            if attempt == BIND_ATTEMPTS or not _PORT_TAKEN.search(output):
                if self._own_root:
                    shutil.rmtree(self.root, ignore_errors=True)
                raise RuntimeError(
                    f"the Pub/Sub emulator ({' '.join(self.command)}) did not start on "
                    f"port {port}:\n{output[-3000:]}"
                )

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would: everything it held is lost.
        Keeps `host`, for start_again()."""
        process, self._process = self._process, None
        assert process is not None, "the emulator is not running"
        _signal_group(process, signal.SIGKILL)
        process.wait()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_SECONDS)
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()

    def start_again(self) -> None:
        """Start on the port it had (clients keep their address), empty, as a restarted
        emulator is; raises RuntimeError with its output when it does not listen."""
        port = int(self.host.rsplit(":", 1)[1])
        if not self._start_on(port):
            output = self.output()
            self.stop(remove=False)
            raise RuntimeError(f"the Pub/Sub emulator did not start again on {port}:\n{output}")

    def _start_on(self, port: int) -> bool:
        """True once the ready line for `port` is out; False if the process ended or timed
        out first."""
        if self.command[1:2] == ["beta"]:
            flags = [f"--host-port={self.listen_host}:{port}", f"--data-dir={self.data_dir}"]
        else:
            flags = [f"--host={self.listen_host}", f"--port={port}"]
        env = dict(os.environ)
        # gcloud keeps its configuration (and env.yaml) here instead of the user's home.
        env.setdefault("CLOUDSDK_CONFIG", str(self.root / "gcloud"))
        env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
        env.pop("PUBSUB_EMULATOR_HOST", None)
        self._ready.clear()
        self._listening = False
        self._lines = []
        self._process = subprocess.Popen(
            [*self.command, *flags],
            cwd=self.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout, port), daemon=True
        )
        self._reader.start()
        self._ready.wait(START_TIMEOUT_SECONDS)
        return self._listening

    def _read(self, stream: IO[bytes], port: int) -> None:
        """Copy the output to the log, set `_ready` at the ready line (or at the end of the
        output: the process is gone). Reading on keeps the pipe from filling up."""
        with self.log_path.open("a") as log:
            for raw in stream:
                line = raw.decode(errors="replace")
                self._lines.append(line)
                log.write(line)
                log.flush()
                match = _READY.search(line)
                if match and int(match.group(1)) == port:
                    self._listening = True
                    self._ready.set()
        self._ready.set()  # the output ended: so did the process

    def reached_at(self, address: str) -> str:
        """PUBSUB_EMULATOR_HOST for a client that reaches this machine at `address` (a test
        host's end of its veth link); the emulator must listen there (`listen_host`)."""
        if self.listen_host not in ("0.0.0.0", address):
            raise ValueError(f"the emulator listens on {self.listen_host}, not on {address}")
        return f"{address}:{self.port}"

    def output(self) -> str:
        """What it printed so far."""
        return "".join(self._lines)

    def stop(self, *, remove: bool = True) -> None:
        """End the whole process group (SIGTERM, then SIGKILL); remove the temporary folder."""
        process, self._process = self._process, None
        if process is not None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # gcloud's java child may outlive gcloud by a moment: the group goes too.
            _signal_group(process, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_SECONDS)
            self._reader = None
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if remove and self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_emulator(root: Path, **options: str) -> Iterator[PubSubEmulator]:
    """An emulator started in `root` (options: PubSubEmulator's, e.g. listen_host), stopped
    afterwards; for pytest fixtures: fails the test (never skips) when none is installed."""
    import pytest

    try:
        emulator = PubSubEmulator(root, **options)
    except EmulatorMissing as error:
        pytest.fail(str(error), pytrace=False)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def main() -> int:
    """Start and stop one emulator: 0 and where it was found, or 1 and what to install."""
    try:
        emulator = PubSubEmulator()
        emulator.start()
    except EmulatorMissing as error:
        print(error, file=sys.stderr)
        return 1
    except RuntimeError as error:
        print(f"{error}\n{MISSING}", file=sys.stderr)
        return 1
    emulator.stop()
    print(f"Pub/Sub emulator: {' '.join(emulator.command)} (listened on {emulator.host})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
