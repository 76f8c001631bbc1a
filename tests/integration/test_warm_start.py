"""The e2e tests' warm start (tests/support/warm_start.py) behaves like exec'ing `kiln`: the
child gets the environment, working directory and log it is given, exits with kiln's own
codes, answers signals like a Popen'd process, and no kiln module reads its environment at
import time (the launcher imported them under its own)."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cluster import free_port
from tests.support import warm_start

PACKAGES = ("server", "worker", "common", "kiln_cli")


def test_a_bad_setting_is_refused_with_kilns_exit_code_and_message(tmp_path):
    log = tmp_path / "serve.log"
    process = warm_start.start(
        ["serve"],
        env={"KILN_DISPATCH": "kafka", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        log=log,
    )
    assert process.wait(timeout=30) == 2
    assert "KILN_DISPATCH='kafka' is not a dispatch backend" in log.read_text()


def test_the_child_runs_in_its_own_directory_with_its_own_environment(tmp_path):
    """`kiln create-key` writes to the database its environment names, relative to its
    working directory: both must be the child's, not the launcher's."""
    log = tmp_path / "key.log"
    process = warm_start.start(
        ["create-key", "--org", "org_warm"],
        env={"KILN_DATABASE_URL": "sqlite:///relative.db", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        log=log,
    )
    assert process.wait(timeout=60) == 0, log.read_text()
    assert (tmp_path / "relative.db").is_file()
    # The key is the last line of its stdout, which went to the log.
    assert log.read_text().strip().splitlines()[-1].startswith("kiln_"), log.read_text()


def server_settings(folder: Path) -> dict[str, str]:
    return {
        "KILN_DATABASE_URL": f"sqlite:///{folder / 'kiln.db'}",
        "KILN_DATA_DIR": str(folder / "data"),
        "KILN_STORAGE_DIR": str(folder / "storage"),
        "KILN_HTTP_PORT": str(free_port()),
        "KILN_GRPC_PORT": str(free_port()),
        "KILN_WORKER_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin",
    }


def test_signals_and_waits_answer_like_popen(tmp_path):
    env = server_settings(tmp_path)
    killed = warm_start.start(["serve"], env=env, cwd=tmp_path, log=tmp_path / "a.log")
    with pytest.raises(subprocess.TimeoutExpired):
        killed.wait(timeout=0.2)
    assert killed.poll() is None
    killed.kill()
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert killed.returncode == -signal.SIGKILL
    killed.kill()  # an ended process: nothing to signal, as with Popen


def _reads_environment(node: ast.AST) -> bool:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        # Only what runs when the def runs: decorators and default values.
        return any(
            _reads_environment(part)
            for part in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]
            if part is not None
        )
    for inner in ast.walk(node):
        if isinstance(inner, ast.Attribute) and inner.attr in ("environ", "getenv"):
            return True
    return False


def test_no_kiln_module_reads_its_environment_at_import_time():
    """Statements that run at import (outside functions and classes' methods) must not read
    os.environ: a warm-started child would see the launcher's."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for statement in tree.body:
                parts = statement.body if isinstance(statement, ast.ClassDef) else [statement]
                if any(_reads_environment(part) for part in parts):
                    found.append(f"{path.relative_to(root)}:{statement.lineno}")
    assert found == []


def _ignored_signals(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line for line in status.splitlines() if line.startswith("SigIgn:"))


def test_the_child_ignores_the_signals_a_new_interpreter_ignores(tmp_path):
    """SIGPIPE above all: ignored by Python at start, so a write to a closed pipe raises
    BrokenPipeError instead of killing the process (a worker died silently when the
    launcher reset it to the default)."""
    env = server_settings(tmp_path)
    warm = warm_start.start(["serve"], env=env, cwd=tmp_path, log=tmp_path / "w.log")
    fresh = subprocess.Popen(
        [sys.executable, "-c", "print('up', flush=True); import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert fresh.stdout is not None and fresh.stdout.readline() == b"up\n"
        warm_mask = _ignored_signals(warm.pid)
        fresh_mask = _ignored_signals(fresh.pid)
    finally:
        fresh.communicate(b"")
        warm.kill()
        warm.wait(timeout=30)
    assert int(warm_mask.split()[1], 16) & (1 << (signal.SIGPIPE - 1))
    assert warm_mask == fresh_mask
