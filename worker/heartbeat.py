"""The heartbeat of a running task: it renews the task's lease and carries its progress.

One heartbeat runs beside every task, whatever its kind, for the whole run (probe and
staging included). The server's answer is also the cancel signal, so a Cancel reaches
FFmpeg within one interval plus the time to stop the process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from .settings import WorkerSettings
from .tracing import rpc_metadata

log = logging.getLogger(__name__)

# Heartbeats per lease: two may be lost (a slow server, a GC pause) before the lease lapses.
LEASE_RENEWALS = 3
# Longest a running task goes without asking the server whether it was canceled.
CANCEL_CHECK_SECONDS = 0.5


@dataclass
class TaskProgress:
    """What the heartbeat sends next: the latest FFmpeg percent and the stage."""

    percent: float = 0.0
    stage: job_pb2.JobStage = job_pb2.JobStage.JOB_STAGE_TRANSCODING
    # AUDIO of a chunked HLS output: its segments stored so far (worker.tasks.live_audio),
    # sent once by the next report after each change.
    audio_so_far: wpb.RenditionPart | None = None

    async def update(self, percent: float) -> None:
        # Awaitable because run_ffmpeg awaits its progress callback.
        self.percent = percent


def heartbeat_interval(task: wpb.Task, settings: WorkerSettings) -> float:
    renew = (task.lease_seconds or settings.lease_seconds) / LEASE_RENEWALS
    if task.kind == wpb.TASK_KIND_PROBE:
        # No progress to carry, but a Cancel must still reach the probe within a second.
        return min(CANCEL_CHECK_SECONDS, renew)
    return min(settings.progress_interval_seconds, renew)


async def keep_leased(
    stub: worker_service_pb2_grpc.WorkerServiceStub,
    metadata: tuple,
    task: wpb.Task,
    progress: TaskProgress,
    stop: asyncio.Event,
    *,
    interval: float,
    worker_id: str,
) -> None:
    """Renews the lease every `interval` until canceled; sets `stop` when the task was
    canceled or its lease is lost, so that the task stops working for nobody.

    It reports at least three times per lease, whatever the task is doing (a probe or a
    download reports no progress but must not lose its lease), and as often as progress
    reports are configured while encoding. The first report is one interval in: the
    claim has just granted the lease, and a task that ends sooner (a probe, a
    thumbnail) then costs the server no report at all.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            audio = progress.audio_so_far
            response = await stub.ReportProgress(
                wpb.ReportProgressRequest(
                    task_id=task.id,
                    lease_token=task.lease_token,
                    progress=progress.percent,
                    stage=progress.stage,
                    audio_so_far=audio,
                ),
                metadata=rpc_metadata(metadata, task),
                timeout=10,
            )
            if audio is not None and progress.audio_so_far is audio:
                progress.audio_so_far = None  # delivered; a newer list replaces it
            if response.canceled:
                stop.set()
                return
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND):
                log.warning(
                    "task %s of job %s: lease lost (%s); worker %s stops working on it",
                    task.id,
                    task.job_id,
                    error.code().name,
                    worker_id,
                )
                stop.set()  # stop working for nobody
                return
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT and audio is not None:
                # The server refused the audio's segments: the next reports go without
                # them (the lease must still be renewed); the task's result lists them all.
                log.warning("task %s: audio segments refused: %s", task.id, error.details())
                if progress.audio_so_far is audio:
                    progress.audio_so_far = None
                continue
            log.warning("heartbeat for task %s failed: %s", task.id, error.code().name)
