"""`kiln serve` and `kiln worker` for the end-to-end tests, started from an interpreter that
has already imported kiln.

Why: a kiln server spends about 1 CPU-second of its ~1.4 s start importing its libraries
(SQLAlchemy, gRPC, Connect, OpenTelemetry...), a worker about 0.4 s of its 0.55, and the
suite starts some two hundred of them on two cores. Measured on one machine, the whole suite:
902 → 688 CPU-seconds, 528 → 396 s (bench/RESULTS.md, "make test — servers and workers
started warm").

How: one launcher process per pytest process (started at its first use) imports what
`kiln serve` and `kiln worker` import, then forks a child per start. The child is set up as
`subprocess.Popen` would set up `python -m kiln_cli ARGS` — its own environment, working
directory, stdin from /dev/null, stdout and stderr into the log file, a new interpreter's
signal dispositions — and runs the very `kiln_cli.main.main` the `kiln` script runs, then
Python's own exit steps (non-daemon threads joined, atexit handlers, streams flushed). What
differs from an exec'd interpreter: the modules are already imported (a module reading its
environment at import time would read the launcher's: kiln has none, and
tests/integration/test_warm_start.py keeps it so), and the hash seed is the launcher's.

The servers and workers are real processes the tests signal (SIGTERM, SIGKILL) by pid;
`WarmProcess` answers like a `subprocess.Popen` (poll, wait, returncode, send_signal, kill).
The launcher reaps them and reports their exit status. The `kiln` command's own start (its
imports, a bad setting refused at start) is still driven through exec'd processes:
`Cluster.run_to_exit`, test_cli, test_first_minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What `kiln serve` and `kiln worker` import on their way to running, including the
# dispatch and storage backends they load only when configured (Pub/Sub, S3, GCS).
PRELOADED = (
    "kiln_cli.main",
    "server.app",
    "server.gc_tuning",
    "server.dispatch.pubsub",
    "worker.plan_commands",
    "worker.loop",
    "worker.pubsub_queue",
    "common.storage.s3",
    "common.storage.gcs",
)
# How often `WarmProcess.wait` asks whether the process has ended.
_WAIT_POLL_SECONDS = 0.02


class WarmProcess:
    """A process started by the launcher, with the parts of `subprocess.Popen` the tests use."""

    def __init__(self, launcher: _Launcher, pid: int, args: list[str]) -> None:
        self._launcher = launcher
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._launcher.exit_status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(_WAIT_POLL_SECONDS)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> WarmProcess:
    """`python -m kiln_cli ARGS` with `env` in `cwd`, its output in `log`."""
    return _launcher().start(args, env=env, cwd=cwd, log=log)


# --- the test process's side ---------------------------------------------------------------------

# This pytest process's launcher, started at the first start asked for.
_running: dict[str, _Launcher] = {}
_running_lock = threading.Lock()


def _launcher() -> _Launcher:
    with _running_lock:
        launcher = _running.get("launcher")
        if launcher is None or not launcher.alive():
            launcher = _running["launcher"] = _Launcher()
        return launcher


class _Launcher:
    """The launcher process, spoken to in JSON lines over its stdin and stdout (one request
    at a time: tests start and poll processes from several threads)."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{REPO}{os.pathsep}{REPO / 'gen'}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.warm_start"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        ready = self._read()
        if ready.get("ready") is not True:
            raise RuntimeError(f"the warm-start launcher did not start: {ready}")

    def alive(self) -> bool:
        return self._process.poll() is None

    def start(self, args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> WarmProcess:
        answer = self._ask({"start": args, "env": env, "cwd": str(cwd), "log": str(log)})
        if "pid" not in answer:
            raise RuntimeError(f"the warm-start launcher could not start {args}: {answer}")
        return WarmProcess(self, answer["pid"], ["kiln", *args])

    def exit_status(self, pid: int) -> int | None:
        return self._ask({"poll": pid})["returncode"]

    def _ask(self, request: dict) -> dict:
        with self._lock:
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            return self._read()

    def _read(self) -> dict:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the warm-start launcher exited")
        return json.loads(line)


# --- the launcher --------------------------------------------------------------------------------


def _serve_requests() -> None:
    """Imports kiln, then starts and reaps children until its stdin closes."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    # Answers go to a descriptor of their own: a child's fd 1 becomes its log.
    answers = os.dup(sys.stdout.fileno())
    # Forking is safe only from a single thread: none of the imports may have started one.
    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        _reply({"ready": False, "why": "an import started a thread"}, answers)
        return
    ended: dict[int, int] = {}
    _reply({"ready": True}, answers)
    for line in sys.stdin:
        request = json.loads(line)
        if "start" in request:
            _reply({"pid": _fork_child(request, answers)}, answers)
        elif "poll" in request:
            pid = request["poll"]
            if pid not in ended:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    ended[pid] = os.waitstatus_to_exitcode(status)
            _reply({"returncode": ended.get(pid)}, answers)


def _reply(answer: dict, answers: int) -> None:
    os.write(answers, (json.dumps(answer) + "\n").encode())


def _fork_child(request: dict, answers: int) -> int:
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(log)
        return pid
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for fd in (devnull, log, answers):
            os.close(fd)
        # Signal dispositions are left as the launcher's, which are a new interpreter's
        # (SIGPIPE ignored, SIGINT raising KeyboardInterrupt): the launcher sets none.
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["kiln", *request["start"]]
        code = _run_kiln()
    finally:
        os._exit(code)
    raise AssertionError("unreachable")


def _run_kiln() -> int:
    """`kiln_cli.main.main()` and the steps of an interpreter's exit after it."""
    import atexit

    from kiln_cli.main import main

    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # what an uncaught exception does at the top of a script
        import traceback

        traceback.print_exc()
        code = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()  # joins non-daemon threads, as the interpreter does before exiting
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    return code


if __name__ == "__main__":
    _serve_requests()
