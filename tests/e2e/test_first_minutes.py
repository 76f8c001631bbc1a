"""A newcomer's first minutes: `make run` prints commands "to paste into another shell";
pasted into a new shell (no virtualenv on its PATH, no KILN_* variables), they make a
ladder and print its playback URLs, and those URLs play."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.media_probe import decoded_frames

from .cluster import free_port

# What a new login shell has: the system's folders, not the project's virtualenv.
NEW_SHELL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def printed_lines(process: subprocess.Popen[str], until: str, timeout: float) -> list[str]:
    """Lines `kiln up` printed, up to the one containing `until` (read by a thread so a
    silent process cannot hang the test past `timeout`)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if until in line:
            return seen
    raise AssertionError("kiln up never printed its commands:\n" + "\n".join(seen))


def test_the_printed_commands_work_as_pasted(tmp_path: Path):
    kiln = Path(sys.executable).parent / "kiln"
    ports = {
        "KILN_HTTP_PORT": str(free_port()),
        "KILN_GRPC_PORT": str(free_port()),
        "KILN_WORKER_PORT": str(free_port()),
    }
    up = subprocess.Popen(
        [str(kiln), "up"],
        cwd=tmp_path,
        env={"PATH": NEW_SHELL_PATH, "HOME": str(tmp_path), **ports},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = printed_lines(up, "Or curl", timeout=60)
        start = next(i for i, line in enumerate(output) if "paste these" in line) + 1
        end = next(i for i in range(start, len(output)) if not output[i].strip())
        pasted = "\n".join(line.strip() for line in output[start:end])
        assert "kiln jobs play" in pasted, pasted
        shell = subprocess.run(
            ["bash", "-euc", pasted],
            cwd=tmp_path,
            env={"PATH": NEW_SHELL_PATH, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert shell.returncode == 0, (pasted, shell.stdout[-3000:], shell.stderr[-3000:])
        links = [line.split("\t") for line in shell.stdout.splitlines() if line.count("\t") == 2]
        assert [kind for _, kind, _ in links] == ["hls", "mp4"], shell.stdout
        sample = str(tmp_path / "var" / "inputs" / "sample.mp4")
        (source_frames,) = decoded_frames(sample)["video"]
        hls_url, mp4_url = links[0][2], links[1][2]
        assert hls_url.endswith("/master.m3u8") and "/play/" in hls_url
        assert decoded_frames(hls_url)["video"] == [source_frames, source_frames]
        assert decoded_frames(mp4_url)["video"] == [source_frames]
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=20)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
