"""Scratch folders: one per lease, marked as in use while its task runs, swept once its owner
is gone.

A worker removes its own folder when a task ends, but a worker killed with `kill -9` (or by
the kernel's OOM killer, FFmpeg's usual fate) removes nothing: staged inputs and partial
outputs would pile up on the disk until it fills. So each folder carries a lock file that its
worker holds with `flock` for as long as the task runs. The kernel drops the lock when the
holder's process dies, however it dies, so any worker sharing the scratch disk can tell a
dead worker's folder (the lock can be taken) from a running one's (it cannot), without
asking the server and without clocks. NFS v4 carries `flock` between hosts as well.

A folder is made under a hidden name, locked, then renamed into place, so a sweep never
sees a live folder before its lock is held. A folder with no lock file at all (a worker
killed between `mkdir` and taking the lock) is removed once it is older than
UNLOCKED_GRACE_SECONDS.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from .media.errors import SCRATCH_FULL, SCRATCH_FULL_MESSAGE, MediaError

log = logging.getLogger(__name__)

LOCK_NAME = ".in-use.lock"
# Hidden while being made, so a sweep treats it like any other folder only once it is locked.
MAKING_PREFIX = ".making-"
UNLOCKED_GRACE_SECONDS = 300.0
# Between sweeps while the worker runs (one at start too).
SWEEP_EVERY_SECONDS = 600.0


@contextlib.contextmanager
def full_disk_is_scratch_full() -> Iterator[None]:
    """A full scratch disk met outside FFmpeg (staging an input, writing a playlist) fails
    the task with SCRATCH_FULL, retryable: the input is not at fault, and another worker,
    or this one once space is freed, can run it. (FFmpeg's own ENOSPC is read from its
    stderr: worker.media.ffmpeg.)"""
    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise MediaError(SCRATCH_FULL, SCRATCH_FULL_MESSAGE, retryable=True) from error
        raise


@contextlib.contextmanager
def scratch_folder(root: Path, name: str) -> Iterator[Path]:
    """`root/name`, held as in use until the block ends, then removed."""
    root.mkdir(parents=True, exist_ok=True)
    making = root / f"{MAKING_PREFIX}{name}"
    making.mkdir()
    descriptor = os.open(making / LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        folder = root / name
        making.rename(folder)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(making, ignore_errors=True)
        os.close(descriptor)


def sweep(root: Path, now: float | None = None) -> list[str]:
    """Removes the folders under `root` whose worker is gone; returns their names."""
    if not root.is_dir():
        return []
    moment = time.time() if now is None else now
    swept = []
    for folder in root.iterdir():
        if folder.is_symlink() or not folder.is_dir():
            continue
        if _remove_if_abandoned(folder, moment):
            swept.append(folder.name)
    if swept:
        # Workers are dying mid-task (killed, or out of memory): worth an operator's look.
        log.warning("swept %d scratch folder(s) left by stopped workers", len(swept))
    return swept


def _remove_if_abandoned(folder: Path, now: float) -> bool:
    try:
        descriptor = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            age = now - folder.stat().st_mtime
        except FileNotFoundError:
            return False  # removed by its owner meanwhile
        if age < UNLOCKED_GRACE_SECONDS:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    except OSError:
        return False  # not ours to judge (a planted symlink, no permission)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a running task holds it
        # Held by us now: its owner is gone, and no one else can judge it live meanwhile.
        shutil.rmtree(folder, ignore_errors=True)
        return True
    finally:
        os.close(descriptor)
