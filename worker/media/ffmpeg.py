"""Running one ffmpeg process: progress reports, cancellation within a second, no leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from worker.media.errors import (
    CANCELED,
    ENCODE_FAILED,
    SCRATCH_FULL,
    SCRATCH_FULL_MESSAGE,
    MediaError,
    public_message,
)
from worker.media.progress import ProgressParser

ProgressCallback = Callable[[float], Awaitable[None]]

STDERR_TAIL_LINES = 40
# After SIGTERM ffmpeg tries to finish the file (trailer, +faststart rewrite), which can take
# long on a big output; it gets this long before SIGKILL so that a cancel lands within 1 s.
TERMINATE_GRACE_SECONDS = 0.5

# Lines that say nothing about why an encode failed: encoder banners that ignore -loglevel
# (SVT-AV1, x265) and ffmpeg's generic wrap-up printed after the real error.
_UNINFORMATIVE_STDERR = re.compile(
    r"^(svt\[(info|warn)\]|x265 \[info\]|conversion failed|exiting normally"
    r"|error initializing output stream)",
    re.IGNORECASE,
)


# util-linux's setpriv sets the parent-death signal and then execs FFmpeg in place (same pid).
_SETPRIV = shutil.which("setpriv")


def _dies_with_worker(argv: Sequence[str]) -> list[str]:
    """Prefix argv so FFmpeg gets SIGKILL when the worker process dies.

    FFmpeg runs in its own session (so a cancel can signal its whole group), which also
    shields it from a signal aimed at the worker's group: a worker killed with SIGKILL would
    leave an orphan FFmpeg encoding into scratch while the server hands the task to another
    worker. A preexec_fn calling prctl would do the same but is unsafe in a process with
    gRPC's threads (the forked child can crash before exec), so the exec'd setpriv does it.
    Without setpriv the lease expiry still recovers the task; only the orphan lingers.
    """
    if _SETPRIV is None:
        return list(argv)
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]


async def run_ffmpeg(
    argv: Sequence[str],
    *,
    duration: float,
    on_progress: ProgressCallback | None,
    cancel_event: asyncio.Event,
    min_report_interval: float = 0.25,
    remove_on_failure: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    cpu_seconds: int | None = None,
) -> None:
    """Runs ffmpeg (argv as built in worker.media.commands, with `-progress pipe:1`) to the end.

    on_progress gets the percentage (0-100, never decreasing) at most every
    `min_report_interval` seconds, and always gets the final 100 of a successful run.
    Setting cancel_event stops ffmpeg (SIGTERM, SIGKILL after TERMINATE_GRACE_SECONDS) and
    raises MediaError(CANCELED). A non-zero exit raises MediaError(ENCODE_FAILED) with the last
    informative stderr line. Files in `remove_on_failure` are deleted whenever the run does not
    succeed, so a canceled or failed output leaves no partial files. `env` replaces the
    environment (the worker passes its InputAccess environment, which names the proxy).
    `cwd` is the working directory; `cpu_seconds` caps the CPU time FFmpeg may use (SIGKILL
    when reached, reported as ENCODE_FAILED naming the limit).

    The process runs in its own session and is always reaped before this returns or raises,
    including when the calling task itself is cancelled.
    """
    process = await asyncio.create_subprocess_exec(
        *_dies_with_worker(argv),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=env,
        cwd=cwd,
    )
    if cpu_seconds is not None:
        _limit_cpu(process.pid, cpu_seconds)
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    reporter = _ThrottledReporter(on_progress, min_report_interval)
    succeeded = False
    run = asyncio.create_task(_run_to_exit(process, duration, reporter, stderr_tail))
    canceled = asyncio.create_task(cancel_event.wait())
    try:
        await asyncio.wait({run, canceled}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            await _stop(process)
            raise MediaError(CANCELED, "canceled")
        returncode = run.result()
        if returncode != 0:
            if cpu_seconds is not None and returncode == -signal.SIGKILL:
                raise MediaError(
                    ENCODE_FAILED, f"ffmpeg was stopped at its CPU-time limit ({cpu_seconds} s)"
                )
            raise _encode_failure(returncode, stderr_tail)
        await reporter.finish()
        succeeded = True
    finally:
        canceled.cancel()
        run.cancel()
        _signal_group(process, signal.SIGKILL)
        # Shielded: if our caller is being cancelled, the child must still be reaped.
        await asyncio.shield(process.wait())
        # asyncio.wait rather than `await run`, which would raise the run's own CancelledError
        # and make it indistinguishable from a cancellation of this task.
        await asyncio.wait({run})
        if not run.cancelled():
            run.exception()  # retrieved, so asyncio does not log it as never retrieved
        if not succeeded:
            for path in remove_on_failure:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _limit_cpu(pid: int, seconds: int) -> None:
    """RLIMIT_CPU on the started child, soft = hard so the kernel sends SIGKILL (FFmpeg treats
    SIGXCPU as a polite stop and would finish the file). Set from outside with prlimit(2)
    rather than in a preexec_fn, which is unsafe in a process with gRPC's threads; setpriv
    execs FFmpeg in the same process, so the limit carries over. The child has run for
    microseconds when it is set."""
    with contextlib.suppress(ProcessLookupError):
        resource.prlimit(pid, resource.RLIMIT_CPU, (seconds, seconds))


async def _run_to_exit(
    process: asyncio.subprocess.Process,
    duration: float,
    reporter: _ThrottledReporter,
    stderr_tail: deque[str],
) -> int:
    stdout, stderr = process.stdout, process.stderr
    if stdout is None or stderr is None:
        raise RuntimeError("ffmpeg must be started with stdout and stderr pipes")
    parser = ProgressParser(duration)

    async def follow_progress() -> None:
        async for raw_line in stdout:
            percent = parser.feed(raw_line.decode("utf-8", "replace"))
            if percent is not None:
                await reporter.report(percent)

    async def follow_stderr() -> None:
        # Read in chunks, not lines: one pathological line without a newline would otherwise
        # overrun the StreamReader limit.
        pending = ""
        while chunk := await stderr.read(4096):
            pending += chunk.decode("utf-8", "replace")
            *complete, pending = re.split(r"[\r\n]", pending)
            stderr_tail.extend(line for line in complete if line.strip())
            pending = pending[-4096:]
        if pending.strip():
            stderr_tail.append(pending)

    await asyncio.gather(follow_progress(), follow_stderr())
    return await process.wait()


class _ThrottledReporter:
    def __init__(self, on_progress: ProgressCallback | None, min_interval: float) -> None:
        self._on_progress = on_progress
        self._min_interval = min_interval
        self._last_value: float | None = None
        self._last_time = -float("inf")

    async def report(self, percent: float) -> None:
        if self._on_progress is None or percent == self._last_value:
            return
        now = time.monotonic()
        if percent < 100 and now - self._last_time < self._min_interval:
            return
        self._last_value, self._last_time = percent, now
        await self._on_progress(percent)

    async def finish(self) -> None:
        # ffmpeg ends with progress=end, which already reported 100; this covers a run whose
        # last progress block was lost (e.g. stdout closed early).
        await self.report(100.0)


async def _stop(process: asyncio.subprocess.Process) -> None:
    _signal_group(process, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), TERMINATE_GRACE_SECONDS)
    except TimeoutError:
        _signal_group(process, signal.SIGKILL)
        await asyncio.shield(process.wait())


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    # Only while the leader is unreaped: after that its pid (and so the group id) may be reused.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def _encode_failure(returncode: int, stderr_tail: deque[str]) -> MediaError:
    if returncode < 0:
        # Killed from outside (OOM killer, an operator): the same command may well succeed.
        name = signal.Signals(-returncode).name
        return MediaError(ENCODE_FAILED, f"ffmpeg was killed by {name}", retryable=True)
    if any("No space left on device" in line for line in stderr_tail):
        return MediaError(SCRATCH_FULL, SCRATCH_FULL_MESSAGE, retryable=True)
    informative = [line for line in stderr_tail if not _UNINFORMATIVE_STDERR.match(line.strip())]
    if informative:
        return MediaError(ENCODE_FAILED, public_message(informative[-1]))
    return MediaError(ENCODE_FAILED, f"ffmpeg exited with code {returncode}")


def ffreport_setting(log_path: Path, level: int = 32) -> str:
    """The FFREPORT value that writes an info-level (32; verbose: 40) log to log_path, while
    stderr stays at the error level of COMMON_FLAGS: for filters that report their figures at
    info (ssim, psnr, loudnorm)."""
    # FFREPORT is a ':'-separated key=value list; ':' and '\' in the path must be escaped.
    escaped = re.sub(r"([:\\'])", r"\\\1", str(log_path))
    return f"file={escaped}:level={level}"
