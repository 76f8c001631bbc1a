"""Scratch folders of dead workers are swept; a running worker's never are (real processes
holding real locks, killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.scratch import LOCK_NAME, UNLOCKED_GRACE_SECONDS, scratch_folder, sweep

REPO = Path(__file__).resolve().parents[2]

# A stand-in worker: holds one scratch folder the way the worker loop does, writes a file
# into it, says so, and waits to be killed.
HOLDER = """
import sys
from pathlib import Path
from worker.scratch import scratch_folder
with scratch_folder(Path(sys.argv[1]), sys.argv[2]) as folder:
    (folder / "input-0").write_bytes(b"x" * 1000)
    print("holding", flush=True)
    sys.stdin.read()
"""


def _holder(root: Path, name: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_killed_workers_folder_is_swept_and_a_running_ones_is_kept(tmp_path):
    root = tmp_path / "scratch"
    running = _holder(root, "task_a-1")
    killed = _holder(root, "task_b-2")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert (root / "task_b-2" / "input-0").exists()

        assert sweep(root) == ["task_b-2"]

        assert not (root / "task_b-2").exists()
        assert (root / "task_a-1" / "input-0").exists()
        assert sweep(root) == []
    finally:
        running.kill()
        running.wait()
    assert sweep(root) == ["task_a-1"]
    assert list(root.iterdir()) == []


def test_a_folder_ends_with_its_task_and_holds_its_lock_meanwhile(tmp_path):
    root = tmp_path / "scratch"
    with scratch_folder(root, "task_c-3") as folder:
        assert folder == root / "task_c-3"
        assert (folder / LOCK_NAME).exists()
        assert sweep(root) == []  # this process holds it
    assert list(root.iterdir()) == []


def test_an_unlocked_folder_is_left_while_young_and_swept_when_old(tmp_path):
    root = tmp_path / "scratch"
    (root / "task_d-4").mkdir(parents=True)
    (root / "task_d-4" / "out.mp4").write_bytes(b"partial")
    assert sweep(root) == []
    assert sweep(root, now=time.time() + UNLOCKED_GRACE_SECONDS + 1) == ["task_d-4"]


def test_planted_links_lead_nowhere(tmp_path):
    root = tmp_path / "scratch"
    root.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    # A link in the scratch root to a folder elsewhere, and a folder whose lock file is a link.
    (root / "task_e-5").symlink_to(precious, target_is_directory=True)
    (root / "task_f-6").mkdir()
    (root / "task_f-6" / LOCK_NAME).symlink_to(precious / "keep.txt")
    (root / "not-a-folder").write_text("x")

    assert sweep(root, now=time.time() + UNLOCKED_GRACE_SECONDS + 1) == []

    assert (precious / "keep.txt").read_text() == "keep"
    assert (root / "task_f-6").exists()


def test_a_missing_scratch_root_sweeps_nothing(tmp_path):
    assert sweep(tmp_path / "never-made") == []
