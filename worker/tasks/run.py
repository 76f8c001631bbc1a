"""What every kind of task works with, and the steps the kinds share: reading an input,
running FFmpeg, describing what it wrote and storing it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.storage.failures import StorageRefused, StorageUnavailable
from common.storage.grants import TransferGrant, download_with_grants, upload_with_grants
from common.storage.origins import Origins

from ..heartbeat import TaskProgress
from ..inputs import TaskInputs
from ..media.describe import describe_output_file
from ..media.errors import STORAGE_REFUSED, STORAGE_UNAVAILABLE, MediaError
from ..media.ffmpeg import ffreport_setting, run_ffmpeg
from ..media.plan import CommandPlan
from ..media.together import each
from ..metrics import WorkerMetrics
from ..settings import WorkerSettings
from ..tracing import encode_span, located, probe_span, probed, stage_in_span, upload_span

# ffprobe runs describing one output's files at a time (describe_folder).
DESCRIBE_AT_ONCE = 4


@dataclass
class TaskRun:
    task: wpb.Task
    # The run's own folder: a rerun of the task under a new lease never shares it.
    scratch: Path
    # What the heartbeat reports; each kind moves it along as it goes.
    progress: TaskProgress
    # Set when the task must stop (canceled, lease lost, drain time up).
    stop: asyncio.Event
    inputs: TaskInputs
    settings: WorkerSettings
    metrics: WorkerMetrics
    origins: Origins
    # Asks the server for presigned URLs (GrantTransfers) when task.storage_grants is set.
    grants: GrantRequester | None = None

    def output_folder(self) -> Path:
        """Where FFmpeg writes what is to be stored under the task's output prefix."""
        folder = self.scratch / "out"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def locate(
        self, url: str, staging_dir: Path, *, known_ranges: bool | None
    ) -> tuple[str, bool]:
        """Where FFmpeg reads `url` (see TaskInputs.locate), under a stage-in span."""
        with stage_in_span(url) as span:
            location, ranges = await self.inputs.locate(url, staging_dir, known_ranges=known_ranges)
            located(span, url, location)
        return location, ranges

    async def probe(self, location: str) -> job_pb2.InputInfo:
        with probe_span() as span:
            info = await self.inputs.probe(location)
            probed(span, info)
        return info

    async def encode(self, plan: CommandPlan) -> None:
        """One FFmpeg run of a planned encode, under its span, through the task's input access
        (and a CPU limit for custom commands), timed for the realtime-factor metric."""
        started = time.monotonic()
        with encode_span(self.task.output_spec, plan.expected_duration):
            env = self.inputs.access.environment()
            if plan.report_log is not None:
                env["FFREPORT"] = ffreport_setting(plan.report_log)
            await run_ffmpeg(
                self.inputs.access.apply(plan.argv),
                env=env,
                duration=plan.expected_duration,
                on_progress=self.progress.update,
                cancel_event=self.stop,
                min_report_interval=self.settings.progress_interval_seconds,
                cwd=plan.cwd,
                cpu_seconds=self.settings.custom_cpu_seconds if plan.cpu_limited else None,
            )
        self.metrics.encoded(plan.expected_duration, time.monotonic() - started)

    async def run_on_pieces(self, plan: CommandPlan) -> None:
        """One FFmpeg run over files this task already fetched (a merge's concat or remux):
        no input access to apply, and not an encode for the realtime-factor metric."""
        await run_ffmpeg(
            plan.argv,
            duration=plan.expected_duration,
            on_progress=self.progress.update,
            cancel_event=self.stop,
            min_report_interval=self.settings.progress_interval_seconds,
        )

    async def store(self, out_dir: Path, files: list[job_pb2.OutputFile], *, replace: bool) -> None:
        """Uploads out_dir under the task's output prefix: replacing what is there, or adding
        beside it (a chunk's files join those of the other pieces)."""
        if self.task.storage_grants:
            # An organization's origin: one presigned PUT per file, asked for at once. The
            # server removes what a replacing run left stale when it accepts the result.
            with upload_span("origin", files):
                await self._upload_granted(out_dir)
            return
        backend = self.origins.backend(self.task.output_origin)
        upload = backend.put_directory if replace else backend.add_files
        with upload_span(self.task.output_origin, files):
            await asyncio.to_thread(upload, out_dir, self.task.output_prefix)

    async def _upload_granted(self, out_dir: Path) -> None:
        local = await asyncio.to_thread(_files_by_name, out_dir)
        response = await self._grants(list(local), [])
        pairs = [(local[grant.path], _grant(grant)) for grant in response.puts]
        await _transfer(upload_with_grants, pairs)

    async def fetch_granted(self, paths: list[str], folder: Path) -> dict[str, Path]:
        """Download files of the task's output (a merge's chunks) through presigned GETs."""
        response = await self._grants([], paths)
        targets = {grant.path: folder / Path(grant.path).name for grant in response.gets}
        pairs = [(_grant(grant), targets[grant.path]) for grant in response.gets]
        await _transfer(download_with_grants, pairs)
        return targets

    async def _grants(self, put_paths: list[str], get_paths: list[str]):
        if self.grants is None:
            raise MediaError("WORKER_ERROR", "this worker cannot ask for storage grants")
        try:
            return await self.grants(self.task, put_paths, get_paths)
        except grpc.aio.AioRpcError as error:
            raise MediaError(
                STORAGE_UNAVAILABLE,
                f"the server gave no storage grants ({error.code().name})",
                retryable=True,
            ) from None


GrantRequester = Callable[[wpb.Task, list[str], list[str]], Awaitable[wpb.GrantTransfersResponse]]


def _grant(message: wpb.TransferGrant) -> TransferGrant:
    return TransferGrant(message.path, message.method, message.url, dict(message.headers))


async def _transfer(move: Callable[[Any], None], pairs: Any) -> None:
    """Run a batch of presigned transfers; the storage's refusals become the job's errors."""
    try:
        await asyncio.to_thread(move, pairs)
    except StorageUnavailable as error:
        raise MediaError(STORAGE_UNAVAILABLE, str(error), retryable=True) from None
    except StorageRefused as error:
        raise MediaError(STORAGE_REFUSED, str(error), retryable=False) from None


async def describe_folder(
    out_dir: Path, *, leave_out: Collection[str] = ()
) -> list[job_pb2.OutputFile]:
    """Every file under out_dir, described in path order, but the relative paths in
    `leave_out` (reports a read-back writes and describes itself, maybe while this runs)."""
    # Walked on the event loop, as the worker always has: one task's output folder is small
    # next to the ffprobe runs that describe it. Those run a few at a time: each is mostly
    # process start-up on one core, and a ladder has one per init segment.
    paths = [
        path
        for path in sorted(out_dir.rglob("*"))  # noqa: ASYNC240
        if path.is_file() and path.relative_to(out_dir).as_posix() not in leave_out
    ]
    return await each(
        (describe_output_file(path, out_dir) for path in paths), at_once=DESCRIBE_AT_ONCE
    )


def _files_by_name(out_dir: Path) -> dict[str, Path]:
    """Every regular file under `out_dir` by its slash path relative to it (no symlinks)."""
    return {
        path.relative_to(out_dir).as_posix(): path
        for path in sorted(out_dir.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
