"""The worker's heartbeat: first report one interval after the task starts, then every interval.

A task the claim has just leased needs no renewal at once; a probe or a thumbnail that ends
within one interval reports nothing (before, each sent one ReportProgress at its start, a
locked transaction on the server while the task's FFmpeg ran).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from kiln.worker.v1 import worker_service_pb2 as wpb

from worker.heartbeat import TaskProgress
from worker.loop import Worker
from worker.settings import WorkerSettings

INTERVAL = 0.05
REPORTS = 3


class RecordingServer:
    """Stands in for the server's WorkerService: notes when each report arrives, and answers
    `canceled` to the REPORTS-th so that the heartbeat ends by itself."""

    def __init__(self) -> None:
        self.times: list[float] = []

    async def ReportProgress(self, request, **_options) -> wpb.ReportProgressResponse:  # noqa: N802
        self.times.append(asyncio.get_running_loop().time())
        return wpb.ReportProgressResponse(canceled=len(self.times) >= REPORTS)


async def test_the_first_report_comes_one_interval_after_the_start(tmp_path: Path) -> None:
    worker = Worker(WorkerSettings(storage_dir=tmp_path, progress_interval_seconds=INTERVAL))
    server = RecordingServer()
    worker._stub = server  # type: ignore[assignment]
    task = wpb.Task(id="tsk_1", kind=wpb.TASK_KIND_TRANSCODE, lease_token=7, lease_seconds=30)
    stop = asyncio.Event()

    started = asyncio.get_running_loop().time()
    await worker._heartbeat(task, TaskProgress(), stop)

    assert stop.is_set()  # the canceled answer stops the task
    assert len(server.times) == REPORTS
    assert server.times[0] - started >= INTERVAL
    gaps = [later - earlier for earlier, later in zip(server.times, server.times[1:], strict=False)]
    assert all(gap >= INTERVAL for gap in gaps)


async def test_a_task_shorter_than_an_interval_sends_no_report(tmp_path: Path) -> None:
    worker = Worker(WorkerSettings(storage_dir=tmp_path, progress_interval_seconds=3600))
    server = RecordingServer()
    worker._stub = server  # type: ignore[assignment]
    task = wpb.Task(id="tsk_2", kind=wpb.TASK_KIND_TRANSCODE, lease_token=7, lease_seconds=30)

    heartbeat = asyncio.create_task(worker._heartbeat(task, TaskProgress(), asyncio.Event()))
    # Let the heartbeat start and reach its wait, as it does while the task's FFmpeg runs.
    for _ in range(10):
        await asyncio.sleep(0)
    heartbeat.cancel()
    await asyncio.gather(heartbeat, return_exceptions=True)

    assert server.times == []


class RefusingAudioServer(RecordingServer):
    """Refuses every report that carries audio segments (INVALID_ARGUMENT), as the server does
    a list it cannot trust; records what each report carried."""

    def __init__(self) -> None:
        super().__init__()
        self.carried: list[int] = []

    async def ReportProgress(self, request, **_options) -> wpb.ReportProgressResponse:  # noqa: N802
        self.carried.append(len(request.audio_so_far.segments))
        if request.HasField("audio_so_far"):
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="segment 'audio/seg_00000.ts' is not in storage",
            )
        return await super().ReportProgress(request)


async def test_refused_audio_segments_are_not_sent_again(tmp_path: Path) -> None:
    """The lease must still be renewed: the next reports go without the refused list."""
    worker = Worker(WorkerSettings(storage_dir=tmp_path, progress_interval_seconds=INTERVAL))
    server = RefusingAudioServer()
    worker._stub = server  # type: ignore[assignment]
    task = wpb.Task(id="tsk_3", kind=wpb.TASK_KIND_AUDIO, lease_token=7, lease_seconds=30)
    progress = TaskProgress()
    progress.audio_so_far = wpb.RenditionPart(
        name="audio", codec="mp4a.40.2", segments=[wpb.Segment(path="audio/seg_00000.ts")]
    )

    await worker._heartbeat(task, progress, asyncio.Event())

    assert server.carried == [1] + [0] * REPORTS
    assert progress.audio_so_far is None
