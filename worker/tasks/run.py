"""What every kind of task works with, and the steps the kinds share: reading an input,
running FFmpeg, describing what it wrote and storing it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.storage.origins import Origins

from ..heartbeat import TaskProgress
from ..inputs import TaskInputs
from ..media.describe import describe_output_file
from ..media.ffmpeg import run_ffmpeg
from ..media.plan import CommandPlan
from ..metrics import WorkerMetrics
from ..settings import WorkerSettings
from ..tracing import encode_span, located, probe_span, probed, stage_in_span, upload_span


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
            await run_ffmpeg(
                self.inputs.access.apply(plan.argv),
                env=self.inputs.access.environment(),
                duration=plan.expected_duration,
                on_progress=self.progress.update,
                cancel_event=self.stop,
                min_report_interval=self.settings.progress_interval_seconds,
                cwd=plan.cwd,
                cpu_seconds=self.settings.custom_cpu_seconds if plan.cpu_limited else None,
            )
        self.metrics.encoded(plan.expected_duration, time.monotonic() - started)

    async def store(self, out_dir: Path, files: list[job_pb2.OutputFile], *, replace: bool) -> None:
        """Uploads out_dir under the task's output prefix: replacing what is there, or adding
        beside it (a chunk's files join those of the other pieces)."""
        backend = self.origins.backend(self.task.output_origin)
        upload = backend.put_directory if replace else backend.add_files
        with upload_span(self.task.output_origin, files):
            await asyncio.to_thread(upload, out_dir, self.task.output_prefix)


async def describe_folder(out_dir: Path) -> list[job_pb2.OutputFile]:
    """Every file under out_dir, described in path order."""
    # Walked on the event loop, as the worker always has: one task's output folder is small
    # next to the ffprobe runs that describe it.
    return [
        await describe_output_file(path, out_dir)
        for path in sorted(out_dir.rglob("*"))  # noqa: ASYNC240
        if path.is_file()
    ]
