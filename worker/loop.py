"""The worker: claim a task from the server, run it with plain media functions, report.

The worker holds no state and no database credentials. While a task runs, one
reporter sends progress every `progress_interval_seconds`; its answer doubles
as the lease heartbeat and as the cancel signal, so a Cancel reaches FFmpeg
within one interval plus the time to stop the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from common.input_policy import InputPolicy, InputRefused
from server.config import Settings
from server.storage.gcs import download_to
from server.storage.local import LocalStorage
from server.storage.origins import Origins, gcs_client

from . import remote
from .media.commands import build_command
from .media.describe import describe_output_file
from .media.errors import MediaError
from .media.ffmpeg import run_ffmpeg
from .media.packaging import finalize_output
from .media.probe import probe

log = logging.getLogger(__name__)

S = job_pb2.JobStage
COMPLETE_ATTEMPTS = 4


@dataclass
class TaskProgress:
    """What the reporter sends next: the latest FFmpeg percent and the stage."""

    percent: float = 0.0
    stage: int = S.JOB_STAGE_TRANSCODING


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.policy = InputPolicy.from_lists(
            settings.input_roots, settings.input_allow_hosts, settings.gcs_input_buckets
        )
        self.origins = Origins(LocalStorage(settings.storage_dir))
        self.metadata = (
            (("authorization", f"Bearer {settings.worker_token}"),) if settings.worker_token else ()
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: worker_service_pb2_grpc.WorkerServiceStub | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._channel = grpc.aio.insecure_channel(self.settings.effective_server_address)
        self._stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        slots = [
            asyncio.create_task(self._slot(stop, index), name=f"worker-slot-{index}")
            for index in range(max(self.settings.worker_concurrency, 1))
        ]
        try:
            await stop.wait()
        finally:
            for slot in slots:
                slot.cancel()
            await asyncio.gather(*slots, return_exceptions=True)
            await self._channel.close()

    async def _slot(self, stop: asyncio.Event, index: int) -> None:
        assert self._stub is not None
        while not stop.is_set():
            try:
                response = await self._stub.ClaimTask(
                    wpb.ClaimTaskRequest(worker_id=f"{self.worker_id}/{index}", wait_seconds=10),
                    metadata=self.metadata,
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                log.warning("claiming a task failed: %s", error.code().name)
                await asyncio.sleep(1)  # server down or restarting: back off, then retry
                continue
            if response.HasField("task"):
                await self.run_task(response.task)

    async def run_task(self, task: wpb.Task) -> None:
        log.info("task %s (%s) for job %s", task.id, wpb.TaskKind.Name(task.kind), task.job_id)
        try:
            if task.kind == wpb.TASK_KIND_PROBE:
                await self._probe(task)
            else:
                await self._transcode(task)
        except MediaError as error:
            if error.code == "CANCELED":
                return
            await self._complete(
                task,
                error=job_pb2.JobError(
                    code=error.code,
                    message=error.message,
                    retryable=error.retryable,
                    stage=S.JOB_STAGE_PROBING
                    if task.kind == wpb.TASK_KIND_PROBE
                    else S.JOB_STAGE_TRANSCODING,
                ),
            )
        except grpc.aio.AioRpcError as error:
            # ABORTED: our lease is stale and another worker owns the task now.
            log.warning("task %s: report refused: %s", task.id, error.details())
        except Exception:
            log.exception("task %s failed unexpectedly", task.id)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._complete(
                    task,
                    error=job_pb2.JobError(
                        code="WORKER_ERROR",
                        message="the worker failed unexpectedly",
                        retryable=True,
                    ),
                )

    async def _probe(self, task: wpb.Task) -> None:
        scratch = Path(self.settings.scratch_dir) / task.id
        try:
            location, ranges = await self._input_location(
                task.input_url, scratch, known_ranges=None
            )
            info = await probe(location)
            info.supports_byte_ranges = ranges
            await self._complete(task, input_info=info)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    async def _input_location(
        self, url: str, staging_dir: Path, *, known_ranges: bool | None
    ) -> tuple[str, bool]:
        """A path or URL FFmpeg can open, and whether an http(s) origin serves byte ranges.

        The worker re-checks the input policy itself (DNS may answer differently
        than it did at Create). An http(s) origin that honours ranges is read in
        place, so FFmpeg seeks instead of downloading; one that does not is
        staged to scratch once for this task.
        """
        try:
            await asyncio.to_thread(self.policy.check_resolved, url)
            scheme = urlsplit(url).scheme.lower()
            if scheme == "file":
                return str(self.policy.local_path(url)), False
        except InputRefused as refused:
            raise MediaError("INPUT_REFUSED", str(refused)) from None
        if scheme == "gs":
            return str(await self._stage_gs(url, staging_dir / "input")), False
        if scheme not in ("http", "https"):
            raise MediaError(
                "INPUT_UNREADABLE", f"{scheme}:// inputs are not supported by this worker yet"
            )
        ranges = known_ranges if known_ranges is not None else await remote.supports_ranges(url)
        if ranges:
            return url, True
        return str(await remote.stage(url, staging_dir / "input")), False

    async def _concat_inputs(
        self, task: wpb.Task, scratch: Path
    ) -> list[tuple[str, job_pb2.InputInfo]]:
        """Inputs joined after the first; each is probed here (the server probed only the first)."""
        extra = []
        for index, url in enumerate(task.concat_input_urls, start=1):
            location, _ = await self._input_location(
                url, scratch / f"input-{index}", known_ranges=None
            )
            extra.append((location, await probe(location)))
        return extra

    async def _stage_gs(self, url: str, target: Path) -> Path:
        """gs:// inputs are staged once per task: FFmpeg cannot read GCS itself."""
        try:
            return await download_to(url, target, gcs_client())
        except FileNotFoundError:
            raise MediaError("INPUT_UNREADABLE", "the gs:// input does not exist") from None
        except PermissionError:
            raise MediaError("INPUT_UNREADABLE", "no permission to read the gs:// input") from None
        except ValueError as error:
            raise MediaError("INPUT_REFUSED", str(error)) from None

    async def _transcode(self, task: wpb.Task) -> None:
        scratch = Path(self.settings.scratch_dir) / task.id
        out_dir = scratch / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        cancel = asyncio.Event()
        progress = TaskProgress()

        async def on_progress(percent: float) -> None:
            progress.percent = percent

        reporter = asyncio.create_task(self._report_loop(task, progress, cancel))
        try:
            location, _ = await self._input_location(
                task.input_url,
                scratch / "input-0",
                known_ranges=task.input_info.supports_byte_ranges or None,
            )
            plan = build_command(
                input_path=location,
                spec=task.output_spec,
                info=task.input_info,
                out_dir=out_dir,
                extra_inputs=await self._concat_inputs(task, scratch),
            )
            await run_ffmpeg(
                plan.argv,
                duration=plan.expected_duration,
                on_progress=on_progress,
                cancel_event=cancel,
                min_report_interval=self.settings.progress_interval_seconds,
            )
            # Playlists are rewritten from the produced segments and sprite maps written
            # before anything is described.
            progress.stage = S.JOB_STAGE_PACKAGING
            plan.notes += await finalize_output(task.output_spec, task.input_info, out_dir, plan)
            files = [
                await describe_output_file(path, out_dir)
                for path in sorted(out_dir.rglob("*"))
                if path.is_file()
            ]
            # The reporter keeps running: a long upload still extends the lease.
            progress.stage = S.JOB_STAGE_UPLOADING
            backend = self.origins.backend(task.output_origin)
            await asyncio.to_thread(backend.put_directory, out_dir, task.output_prefix)
            reporter.cancel()
            await self._complete(
                task,
                transcode=wpb.TranscodeResult(
                    files=files, notes=plan.notes, encoded_seconds=plan.expected_duration
                ),
            )
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reporter
            shutil.rmtree(scratch, ignore_errors=True)

    async def _report_loop(
        self, task: wpb.Task, progress: TaskProgress, cancel: asyncio.Event
    ) -> None:
        assert self._stub is not None
        while True:
            try:
                response = await self._stub.ReportProgress(
                    wpb.ReportProgressRequest(
                        task_id=task.id,
                        lease_token=task.lease_token,
                        progress=progress.percent,
                        stage=progress.stage,
                    ),
                    metadata=self.metadata,
                    timeout=10,
                )
                if response.canceled:
                    cancel.set()
                    return
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND):
                    cancel.set()  # the lease is gone: stop encoding for nobody
                    return
                log.warning("progress report failed: %s", error.code().name)
            await asyncio.sleep(self.settings.progress_interval_seconds)

    async def _complete(self, task: wpb.Task, **result) -> None:
        """Report the result, retrying a slow or unreachable server.

        A finished encode is worth a few tries: giving up would let the lease expire and
        the whole task run again. A repeat is harmless, since the server ignores a result
        for a task that is no longer leased.
        """
        assert self._stub is not None
        request = wpb.CompleteTaskRequest(task_id=task.id, lease_token=task.lease_token, **result)
        for attempt in range(1, COMPLETE_ATTEMPTS + 1):
            try:
                await self._stub.CompleteTask(request, metadata=self.metadata, timeout=30)
                return
            except grpc.aio.AioRpcError as error:
                retriable = error.code() in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNAVAILABLE,
                )
                if not retriable or attempt == COMPLETE_ATTEMPTS:
                    raise
                log.warning("reporting task %s failed (%s); retrying", task.id, error.code().name)
                await asyncio.sleep(attempt)
