"""The worker: claim a task from the server, run it with plain media functions, report.

The worker holds no state and no database credentials. While a task of any kind
runs, one heartbeat renews its lease (at least three times a lease) and, while
encoding, carries progress every `progress_interval_seconds`; its answer is also
the cancel signal, so a Cancel reaches FFmpeg within one interval plus the time
to stop the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from common import egress
from common.hls_playlists import AUDIO_RENDITION, Rendition, SegmentEntry
from common.input_policy import InputPolicy
from common.pubsub import subscriber_client
from common.storage.gcs import download_to
from common.storage.local import LocalStorage
from common.storage.origins import Origins, gcs_client

from .inputs import TaskInputs
from .media.chunks import (
    ChunkCommand,
    ChunkWindow,
    build_audio_command,
    build_video_chunk_command,
)
from .media.commands import build_command
from .media.describe import describe_output_file
from .media.errors import MediaError
from .media.ffmpeg import run_ffmpeg
from .media.merge import (
    build_concat_merge_command,
    describe_chunk_file,
    joined_renditions,
    measure_chunk_renditions,
    write_hls_playlists,
)
from .media.packaging import finalize_output
from .media.plan import CommandPlan
from .media.quality import measure_quality
from .metrics import WorkerMetrics
from .settings import WorkerSettings, local_storage_warning
from .sources import Claimed, PubSubQueue, ServerQueue, TaskSource, keep_extended
from .tracing import (
    encode_span,
    located,
    mark_failed,
    package_span,
    probe_span,
    probed,
    rpc_metadata,
    setup_tracing,
    stage_in_span,
    task_span,
    upload_span,
)

log = logging.getLogger(__name__)

S = job_pb2.JobStage
# What the metrics and logs call each kind of task.
KIND_NAMES = {
    wpb.TASK_KIND_PROBE: "probe",
    wpb.TASK_KIND_TRANSCODE: "transcode",
    wpb.TASK_KIND_CHUNK: "chunk",
    wpb.TASK_KIND_AUDIO: "audio",
    wpb.TASK_KIND_MERGE: "merge",
}
COMPLETE_ATTEMPTS = 4
# Heartbeats per lease: two may be lost (a slow server, a GC pause) before the lease lapses.
LEASE_RENEWALS = 3
# Longest a running task goes without asking the server whether it was canceled.
CANCEL_CHECK_SECONDS = 0.5


@dataclass
class TaskProgress:
    """What the reporter sends next: the latest FFmpeg percent and the stage."""

    percent: float = 0.0
    stage: job_pb2.JobStage = S.JOB_STAGE_TRANSCODING


class Worker:
    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.policy = InputPolicy.from_lists(
            settings.input_roots, settings.input_allow_hosts, settings.gcs_input_buckets
        )
        self.origins = Origins(LocalStorage(settings.storage_dir))
        self.metadata = (("authorization", f"Bearer {settings.token}"),) if settings.token else ()
        self._channel: grpc.aio.Channel | None = None
        self._stub: worker_service_pb2_grpc.WorkerServiceStub | None = None
        self._source: TaskSource | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Works until `stop`, then drains: no new work is taken, running tasks get
        `drain_seconds` to finish and are given back to the server after that (queued again
        at once, not after a lease expiry). Returns when every slot is idle."""
        warning = local_storage_warning(self.settings)
        if warning:
            log.warning(warning)
        self.metrics.serve(self.settings.metrics_host, self.settings.metrics_port)
        setup_tracing()
        self._channel = grpc.aio.insecure_channel(self.settings.server_address)
        self._stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._source = self._task_source(self._stub)
        log.info(
            "worker %s takes tasks from %s (%s dispatch, %d slots)",
            self.worker_id,
            self.settings.server_address,
            self.settings.dispatch,
            max(self.settings.concurrency, 1),
        )
        slots = [
            asyncio.create_task(self._slot(stop, index), name=f"worker-slot-{index}")
            for index in range(max(self.settings.concurrency, 1))
        ]
        try:
            await asyncio.gather(*slots)
        finally:
            for slot in slots:
                slot.cancel()
            await asyncio.gather(*slots, return_exceptions=True)
            if self._source is not None:
                await self._source.close()
            await self._channel.close()
            self.metrics.stop()

    def _task_source(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> TaskSource:
        if self.settings.dispatch == "pubsub":
            pubsub = self.settings.pubsub
            return PubSubQueue(pubsub, subscriber_client(pubsub), stub, self.metadata)
        return ServerQueue(stub, self.metadata)

    async def _slot(self, stop: asyncio.Event, index: int) -> None:
        """One task at a time: wait for a claim (abandoned at once on stop), then run it
        (given `drain_seconds` on stop)."""
        assert self._source is not None
        worker_id = f"{self.worker_id}/{index}"
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                claiming = asyncio.create_task(self._source.next(worker_id))
                await asyncio.wait({claiming, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not claiming.done():
                    # Stopping while idle: a claim not yet answered is simply abandoned.
                    await _stopped(claiming)
                    break
                claimed = claiming.result()
                if claimed is not None:
                    await self._run_claimed(claimed, stopping)
        finally:
            stopping.cancel()

    async def _run_claimed(self, claimed: Claimed, stopping: asyncio.Task) -> None:
        abandon = asyncio.Event()
        keeper = (
            asyncio.create_task(keep_extended(claimed.delivery))
            if claimed.delivery is not None
            else None
        )
        running = asyncio.create_task(self.run_task(claimed.task, abandon))
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                # Draining: finish if it can within the drain time, else give it back.
                await asyncio.wait({running}, timeout=self.settings.drain_seconds)
                if not running.done():
                    log.warning("task %s: drain time is up; giving it back", claimed.task.id)
                    abandon.set()
            await running
        finally:
            if keeper is not None:
                await _stopped(keeper)
            if claimed.delivery is not None:
                # Done, failed, canceled or given back (a release publishes anew): the
                # message has served its purpose either way.
                await claimed.delivery.ack()

    async def run_task(self, task: wpb.Task, abandon: asyncio.Event | None = None) -> None:
        """Runs one task to its report, in the task's span (see worker.tracing)."""
        with task_span(task, self.worker_id):
            await self._run_task(task, abandon)

    async def _run_task(self, task: wpb.Task, abandon: asyncio.Event | None = None) -> None:
        """Runs one task to its report. A heartbeat renews the lease for the whole run
        (probe and staging included), and every input byte goes through an egress proxy
        of this task's own. `abandon` (a drain running out of time) stops FFmpeg and gives
        the task back to the server unfinished."""
        log.info("task %s (%s) for job %s", task.id, wpb.TaskKind.Name(task.kind), task.job_id)
        probing = task.kind == wpb.TASK_KIND_PROBE
        stop = asyncio.Event()
        stage = (
            S.JOB_STAGE_PROBING
            if probing
            else S.JOB_STAGE_MERGING
            if task.kind == wpb.TASK_KIND_MERGE
            else S.JOB_STAGE_TRANSCODING
        )
        progress = TaskProgress(stage=stage)
        heartbeat = asyncio.create_task(self._heartbeat(task, progress, stop))
        abandoning = asyncio.create_task(_relay(abandon, stop)) if abandon else None
        # One folder per lease: a rerun of the task (its lease taken back while this run
        # was cut off from the server) never shares files with this one.
        scratch = Path(self.settings.scratch_dir) / f"{task.id}-{task.lease_token:x}"
        kind = KIND_NAMES.get(task.kind, "transcode")
        outcome = "error"
        self.metrics.task_started(kind)
        try:
            async with egress.session(self.policy) as session:
                inputs = TaskInputs(self.policy, session, stop, self._stage_gs)
                if probing:
                    result = await self._probe(task, inputs, scratch)
                elif task.kind in (wpb.TASK_KIND_CHUNK, wpb.TASK_KIND_AUDIO):
                    result = await self._chunk(task, inputs, scratch, progress, stop)
                elif task.kind == wpb.TASK_KIND_MERGE:
                    result = await self._merge(task, scratch, progress, stop)
                else:
                    result = await self._transcode(task, inputs, scratch, progress, stop)
            await _stopped(heartbeat)
            await self._complete(task, **result)
            outcome = "completed"
        except MediaError as error:
            await _stopped(heartbeat)
            mark_failed(error.code)
            if error.code == "CANCELED":
                outcome = "canceled"
                if abandon is not None and abandon.is_set():
                    outcome = "released"
                    await self._release(task, "the worker is draining")
                return
            outcome = "refused"  # until the server took the report
            await self._complete(
                task,
                error=job_pb2.JobError(
                    code=error.code,
                    message=error.message,
                    retryable=error.retryable,
                    stage=stage,
                ),
            )
            outcome = "failed"
        except grpc.aio.AioRpcError as error:
            # ABORTED: our lease is stale and another worker owns the task now.
            outcome = "refused"
            log.warning("task %s: report refused: %s", task.id, error.details())
        except Exception:
            log.exception("task %s failed unexpectedly", task.id)
            mark_failed("WORKER_ERROR")
            await _stopped(heartbeat)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._complete(
                    task,
                    error=job_pb2.JobError(
                        code="WORKER_ERROR",
                        message="the worker failed unexpectedly",
                        retryable=True,
                    ),
                )
        finally:
            self.metrics.task_ended(kind, outcome)
            await _stopped(heartbeat)
            if abandoning is not None:
                await _stopped(abandoning)
            shutil.rmtree(scratch, ignore_errors=True)

    async def _release(self, task: wpb.Task, reason: str) -> None:
        assert self._stub is not None
        try:
            await self._stub.ReleaseTask(
                wpb.ReleaseTaskRequest(
                    task_id=task.id, lease_token=task.lease_token, reason=reason
                ),
                metadata=rpc_metadata(self.metadata, task),
                timeout=10,
            )
            log.info("task %s given back to the server (%s)", task.id, reason)
        except grpc.aio.AioRpcError as error:
            # The lease then expires and the reaper requeues it: slower, nothing lost.
            log.warning("giving back task %s failed: %s", task.id, error.code().name)

    async def _probe(self, task: wpb.Task, inputs: TaskInputs, scratch: Path) -> dict:
        async def read() -> job_pb2.InputInfo:
            with stage_in_span(task.input_url) as span:
                location, ranges = await inputs.locate(task.input_url, scratch, known_ranges=None)
                located(span, task.input_url, location)
            with probe_span() as span:
                info = await inputs.probe(location)
                probed(span, info)
            info.supports_byte_ranges = ranges
            return info

        return {"input_info": await inputs.guarded(read())}

    async def _concat_inputs(
        self, task: wpb.Task, inputs: TaskInputs, scratch: Path
    ) -> list[tuple[str, job_pb2.InputInfo]]:
        """Inputs joined after the first; each is probed here (the server probed only the first)."""
        extra = []
        for index, url in enumerate(task.concat_input_urls, start=1):
            with stage_in_span(url) as span:
                location, _ = await inputs.locate(
                    url, scratch / f"input-{index}", known_ranges=None
                )
                located(span, url, location)
            with probe_span() as span:
                info = await inputs.probe(location)
                probed(span, info)
            extra.append((location, info))
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

    async def _encode(
        self,
        task: wpb.Task,
        plan: CommandPlan,
        inputs: TaskInputs,
        on_progress: Callable[[float], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        """One FFmpeg run of a planned encode, under its span, through the task's input access
        (and a CPU limit for custom commands), timed for the realtime-factor metric."""
        started = time.monotonic()
        with encode_span(task.output_spec, plan.expected_duration):
            await run_ffmpeg(
                inputs.access.apply(plan.argv),
                env=inputs.access.environment(),
                duration=plan.expected_duration,
                on_progress=on_progress,
                cancel_event=stop,
                min_report_interval=self.settings.progress_interval_seconds,
                cwd=plan.cwd,
                cpu_seconds=self.settings.custom_cpu_seconds if plan.cpu_limited else None,
            )
        self.metrics.encoded(plan.expected_duration, time.monotonic() - started)

    async def _transcode(
        self,
        task: wpb.Task,
        inputs: TaskInputs,
        scratch: Path,
        progress: TaskProgress,
        stop: asyncio.Event,
    ) -> dict:
        out_dir = scratch / "out"
        out_dir.mkdir(parents=True, exist_ok=True)

        async def on_progress(percent: float) -> None:
            progress.percent = percent

        async def read_and_encode() -> tuple[CommandPlan, str]:
            with stage_in_span(task.input_url) as span:
                location, _ = await inputs.locate(
                    task.input_url,
                    scratch / "input-0",
                    known_ranges=task.input_info.supports_byte_ranges or None,
                )
                located(span, task.input_url, location)
            plan = build_command(
                input_path=location,
                spec=task.output_spec,
                info=task.input_info,
                out_dir=out_dir,
                extra_inputs=await self._concat_inputs(task, inputs, scratch),
            )
            await self._encode(task, plan, inputs, on_progress, stop)
            return plan, location

        plan, location = await inputs.guarded(read_and_encode())
        # Playlists are rewritten from the produced segments and sprite maps written
        # before anything is described.
        progress.stage = S.JOB_STAGE_PACKAGING
        with package_span(task.output_spec):
            plan.notes += await finalize_output(task.output_spec, task.input_info, out_dir, plan)
            files = [
                await describe_output_file(path, out_dir)
                for path in sorted(out_dir.rglob("*"))
                if path.is_file()
            ]
            quality: list[job_pb2.VariantQuality] = []
            if task.output_spec.measure_quality:
                # A second pass over the source and the written output (worker.media.quality).
                quality, quality_file = await inputs.guarded(
                    measure_quality(
                        input_path=location,
                        spec=task.output_spec,
                        info=task.input_info,
                        out_dir=out_dir,
                        work_dir=scratch / "quality",
                        access=inputs.access,
                        cancel_event=stop,
                    )
                )
                files.append(quality_file)
        # The heartbeat keeps running: a long upload still extends the lease.
        progress.stage = S.JOB_STAGE_UPLOADING
        backend = self.origins.backend(task.output_origin)
        with upload_span(task.output_origin, files):
            await asyncio.to_thread(backend.put_directory, out_dir, task.output_prefix)
        return {
            "transcode": wpb.TranscodeResult(
                files=files,
                notes=plan.notes,
                encoded_seconds=plan.expected_duration,
                quality=quality,
            )
        }

    async def _chunk(
        self,
        task: wpb.Task,
        inputs: TaskInputs,
        scratch: Path,
        progress: TaskProgress,
        stop: asyncio.Event,
    ) -> dict:
        """One piece of a chunked output: a time range of its video (every variant), or its
        whole audio. The files go next to those of the other pieces, never replacing them."""
        out_dir = scratch / "out"
        out_dir.mkdir(parents=True, exist_ok=True)

        async def on_progress(percent: float) -> None:
            progress.percent = percent

        async def read_and_encode() -> ChunkCommand:
            with stage_in_span(task.input_url) as span:
                location, _ = await inputs.locate(
                    task.input_url,
                    scratch / "input-0",
                    known_ranges=task.input_info.supports_byte_ranges or None,
                )
                located(span, task.input_url, location)
            if task.kind == wpb.TASK_KIND_AUDIO:
                command = build_audio_command(
                    input_path=location,
                    spec=task.output_spec,
                    info=task.input_info,
                    out_dir=out_dir,
                    timestamp_offset=task.chunk.timestamp_offset_seconds,
                )
            else:
                chunk = task.chunk
                command = build_video_chunk_command(
                    input_path=location,
                    spec=task.output_spec,
                    info=task.input_info,
                    out_dir=out_dir,
                    window=ChunkWindow(
                        index=chunk.index,
                        count=chunk.count,
                        start=chunk.start_seconds,
                        end=chunk.end_seconds,
                        first_segment=chunk.first_segment,
                        timestamp_offset=chunk.timestamp_offset_seconds,
                    ),
                )
            plan = command.plan
            await self._encode(task, plan, inputs, on_progress, stop)
            return command

        command = await inputs.guarded(read_and_encode())
        progress.stage = S.JOB_STAGE_PACKAGING
        renditions = await measure_chunk_renditions(out_dir, command.playlists)
        video_file = command.file if task.kind == wpb.TASK_KIND_CHUNK else None
        frames = (await describe_chunk_file(video_file)).frames if video_file else 0
        files = [
            await describe_output_file(path, out_dir)
            for path in sorted(out_dir.rglob("*"))
            if path.is_file()
        ]
        progress.stage = S.JOB_STAGE_UPLOADING
        backend = self.origins.backend(task.output_origin)
        with upload_span(task.output_origin, files):
            await asyncio.to_thread(backend.add_files, out_dir, task.output_prefix)
        return {
            "chunk": wpb.ChunkResult(
                files=files,
                notes=command.plan.notes,
                encoded_seconds=command.plan.expected_duration,
                frame_count=frames,
                renditions=[_rendition_message(r) for r in renditions],
            )
        }

    async def _merge(
        self, task: wpb.Task, scratch: Path, progress: TaskProgress, stop: asyncio.Event
    ) -> dict:
        """Joins a chunked output: playlists over its segments (HLS), or the chunks joined
        by stream copy with the audio muxed in (MP4). Nothing is encoded again."""
        out_dir = scratch / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        merge = task.merge
        backend = self.origins.backend(task.output_origin)
        notes = list(dict.fromkeys(n for c in [*merge.chunks, merge.audio] for n in c.notes))
        encoded = sum(chunk.encoded_seconds for chunk in merge.chunks)
        pieces = [*merge.chunks, *([merge.audio] if merge.has_audio else [])]
        if any(chunk.renditions for chunk in merge.chunks):
            joined = joined_renditions(
                [[_rendition(r) for r in chunk.renditions] for chunk in merge.chunks]
            )
            audio = (
                _rendition(merge.audio.renditions[0])
                if merge.has_audio and merge.audio.renditions
                else None
            )
            segment_seconds = task.output_spec.segments.duration_seconds or 6.0
            await asyncio.to_thread(
                write_hls_playlists,
                out_dir,
                list(joined.values()),
                audio,
                segment_seconds=segment_seconds,
            )
            files = [
                await describe_output_file(path, out_dir)
                for path in sorted(out_dir.rglob("*"))
                if path.is_file()
            ]
            # The segments are where the chunks stored them; the result lists them too.
            files += [file for piece in pieces for file in piece.files]
            with upload_span(task.output_origin, files):
                await asyncio.to_thread(backend.add_files, out_dir, task.output_prefix)
        else:
            work = scratch / "pieces"
            work.mkdir(parents=True, exist_ok=True)

            def fetch(path: str) -> Path:
                target = work / Path(path).name
                backend.fetch_file(f"{task.output_prefix}/{path}", target)
                return target

            chunk_files = [
                await describe_chunk_file(await asyncio.to_thread(fetch, chunk.files[0].path))
                for chunk in merge.chunks
            ]
            audio_file = (
                await asyncio.to_thread(fetch, merge.audio.files[0].path)
                if merge.has_audio
                else None
            )
            output = out_dir / "output.mp4"

            async def on_progress(percent: float) -> None:
                progress.percent = percent

            plan = build_concat_merge_command(
                chunks=chunk_files, audio=audio_file, work_dir=work, output=output
            )
            await run_ffmpeg(
                plan.argv,
                duration=plan.expected_duration,
                on_progress=on_progress,
                cancel_event=stop,
                min_report_interval=self.settings.progress_interval_seconds,
            )
            files = [await describe_output_file(output, out_dir)]
            # Replaces the prefix: the chunks' intermediate files go with it.
            with upload_span(task.output_origin, files):
                await asyncio.to_thread(backend.put_directory, out_dir, task.output_prefix)
        return {"transcode": wpb.TranscodeResult(files=files, notes=notes, encoded_seconds=encoded)}

    async def _heartbeat(self, task: wpb.Task, progress: TaskProgress, stop: asyncio.Event) -> None:
        """Renews the lease while the task runs; its answer is also the cancel signal.

        It reports at least three times per lease, whatever the task is doing (a probe or a
        download reports no progress but must not lose its lease), and as often as progress
        reports are configured while encoding. The first report is one interval in: the
        claim has just granted the lease, and a task that ends sooner (a probe, a
        thumbnail) then costs the server no report at all.
        """
        assert self._stub is not None
        interval = self._heartbeat_interval(task)
        while True:
            await asyncio.sleep(interval)
            try:
                response = await self._stub.ReportProgress(
                    wpb.ReportProgressRequest(
                        task_id=task.id,
                        lease_token=task.lease_token,
                        progress=progress.percent,
                        stage=progress.stage,
                    ),
                    metadata=rpc_metadata(self.metadata, task),
                    timeout=10,
                )
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
                        self.worker_id,
                    )
                    stop.set()  # stop working for nobody
                    return
                log.warning("heartbeat for task %s failed: %s", task.id, error.code().name)

    def _heartbeat_interval(self, task: wpb.Task) -> float:
        renew = (task.lease_seconds or self.settings.lease_seconds) / LEASE_RENEWALS
        if task.kind == wpb.TASK_KIND_PROBE:
            # No progress to carry, but a Cancel must still reach the probe within a second.
            return min(CANCEL_CHECK_SECONDS, renew)
        return min(self.settings.progress_interval_seconds, renew)

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
                await self._stub.CompleteTask(
                    request, metadata=rpc_metadata(self.metadata, task), timeout=30
                )
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


def _rendition_message(rendition: Rendition) -> wpb.RenditionPart:
    return wpb.RenditionPart(
        name=rendition.name,
        codec=rendition.codec,
        width=rendition.width,
        height=rendition.height,
        frame_rate=rendition.frame_rate,
        segments=[
            wpb.Segment(path=s.path, duration_seconds=s.duration_seconds, size_bytes=s.size_bytes)
            for s in rendition.segments
        ],
    )


def _rendition(message: wpb.RenditionPart) -> Rendition:
    return Rendition(
        name=message.name or AUDIO_RENDITION,
        codec=message.codec,
        width=message.width,
        height=message.height,
        frame_rate=message.frame_rate,
        segments=[SegmentEntry(s.path, s.duration_seconds, s.size_bytes) for s in message.segments],
    )


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _stopped(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        await task
