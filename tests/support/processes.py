"""Real processes and files seen from outside, for end-to-end tests of cancel and loss."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path


def _ffmpegs() -> Iterator[tuple[int, list[bytes], Path]]:
    """(pid, argv, /proc entry) of every FFmpeg process running now."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone between listing and reading
            continue
        if cmdline and cmdline[0].endswith(b"ffmpeg"):
            yield int(entry.name), cmdline, entry


def ffmpeg_pids_writing_to(directory: Path) -> list[int]:
    folder = str(directory).encode()
    return [pid for pid, cmdline, _ in _ffmpegs() if any(folder in a for a in cmdline)]


def ffmpeg_children_of(parent: int) -> list[int]:
    """FFmpeg processes started by one (worker) process on media: with an input (`-i`), so
    not the `ffmpeg -encoders` listing a worker runs once at start to announce itself."""
    found = []
    for pid, cmdline, entry in _ffmpegs():
        if b"-i" not in cmdline:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent pid is the second field after the parenthesised command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(pid)
    return found


POLL_SECONDS = 0.1


def wait_until(condition: Callable[[], object], timeout: float) -> float:
    """Poll a condition on real processes/files; returns the seconds it took.

    Polling is the only way here: another process's exit or file removal sends this test
    no signal to wait on. Ten looks a second: a condition can cost milliseconds (a scan of
    /proc, a database query), and the suite spends minutes in these waits on two shared
    cores, so a tighter poll took CPU from the processes the test waits on.
    """
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - start
