"""The worker: claim a task from the server, run it with plain media functions, report.

The worker holds no state and no database credentials. Each of its slots takes one task at a
time from its source (worker.sources) and runs it: the function for the task's kind
(worker.tasks), a heartbeat beside it (worker.heartbeat) and the report at its end
(worker.reporter). On stop it drains: no new work is taken, and a task that does not finish
within `drain_seconds` is given back to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from common import egress
from common.input_policy import InputPolicy
from common.storage.local import LocalStorage
from common.storage.origins import Origins

from .announce import (
    announce_first,
    announce_once,
    announcement,
    ffmpeg_encoders,
    keep_announcing,
)
from .heartbeat import TaskProgress, heartbeat_interval, keep_leased
from .inputs import TaskInputs, stage_gs_input
from .media.errors import MediaError
from .metrics import WorkerMetrics
from .reporter import Reporter, TaskResult
from .scratch import SWEEP_EVERY_SECONDS, full_disk_is_scratch_full, scratch_folder, sweep
from .settings import WorkerSettings, channel_target, local_storage_warning
from .sources import Claimed, ServerQueue, TaskSource, keep_extended
from .speeds import SpeedBook
from .tasks.kinds import kind_of
from .tasks.run import TaskRun
from .tracing import mark_failed, setup_tracing, task_span

log = logging.getLogger(__name__)


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
        self._reporter: Reporter | None = None
        self.speeds = SpeedBook()
        self._describe: Callable[[], wpb.AnnounceWorkerRequest] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Works until `stop`, then drains: no new work is taken, running tasks get
        `drain_seconds` to finish and are given back to the server after that (queued again
        at once, not after a lease expiry). Returns when every slot is idle."""
        warning = local_storage_warning(self.settings)
        if warning:
            log.warning(warning)
        self.metrics.serve(self.settings.metrics_host, self.settings.metrics_port)
        setup_tracing()
        self._channel = grpc.aio.insecure_channel(channel_target(self.settings.server_address))
        self._stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._reporter = Reporter(self._stub, self.metadata)
        self._source = self._task_source(self._stub)
        log.info(
            "worker %s takes tasks from %s (%s dispatch, %d slots)",
            self.worker_id,
            self.settings.server_address,
            self.settings.dispatch,
            max(self.settings.concurrency, 1),
        )
        capacity = max(self.settings.concurrency, 1)

        # `ffmpeg -encoders` once, off the event loop; each announcement reuses the list.
        await asyncio.to_thread(ffmpeg_encoders)

        def describe() -> wpb.AnnounceWorkerRequest:
            return announcement(
                self.worker_id, capacity, draining=stop.is_set(), speeds=self.speeds.speeds()
            )

        self._describe = describe

        background: list[asyncio.Task] = []
        slots: list[asyncio.Task] = []
        waiting: list[asyncio.Future[Any]] = []
        try:
            announcing = asyncio.create_task(
                announce_first(self._stub, self.metadata, describe(), self.settings.server_address)
            )
            stopping = asyncio.create_task(stop.wait())
            background = [stopping]
            await asyncio.wait({announcing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not announcing.done():
                # Stopped before the server answered: nothing was taken.
                await _stopped(announcing)
                return
            announced = announcing.result()  # a listener that is not a WorkerService stops here
            await self._sweep_scratch()
            announcer = asyncio.create_task(
                keep_announcing(
                    self._stub,
                    self.metadata,
                    describe,
                    self.settings.lease_seconds / 3,
                    announced,
                    self.settings.server_address,
                ),
                name="announcer",
            )
            background += [
                asyncio.create_task(self._keep_sweeping(), name="scratch-sweeper"),
                announcer,
                asyncio.create_task(self._announce_draining(stop, describe), name="drain-note"),
            ]
            slots = [
                asyncio.create_task(self._slot(stop, index), name=f"worker-slot-{index}")
                for index in range(capacity)
            ]
            every_slot = asyncio.gather(*slots)
            waiting.append(every_slot)
            # The announcer ends only by raising (an address that is not a worker listener,
            # found when the first announcement could not reach it): that stops the worker.
            either: list[asyncio.Future[Any]] = [every_slot, announcer]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if announcer.done():
                announcer.result()
            await every_slot
        finally:
            for task in [*slots, *background]:
                task.cancel()
            # The slots' gather too: stopped by the announcer, it ends with the slots'
            # cancellation, which asyncio would otherwise log as never retrieved.
            await asyncio.gather(*slots, *background, *waiting, return_exceptions=True)
            if self._source is not None:
                await self._source.close()
            await self._channel.close()
            self.metrics.stop()

    async def _announce_draining(
        self, stop: asyncio.Event, describe: Callable[[], wpb.AnnounceWorkerRequest]
    ) -> None:
        """Operators see DRAINING as soon as the worker stops taking tasks."""
        assert self._stub is not None
        await stop.wait()
        await announce_once(self._stub, self.metadata, describe())

    async def _sweep_scratch(self) -> None:
        """Removes scratch folders of workers that died mid-task (see worker.scratch)."""
        try:
            await asyncio.to_thread(sweep, Path(self.settings.scratch_dir))
        except OSError as error:
            log.warning("sweeping the scratch folder failed: %s", error)

    async def _keep_sweeping(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
            await self._sweep_scratch()

    def _task_source(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> TaskSource:
        if self.settings.dispatch == "pubsub":
            # Imported only here: Google's client costs a worker's start 0.3 s of CPU.
            from common.pubsub import subscriber_client

            from .pubsub_queue import PubSubQueue

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
        assert self._reporter is not None
        log.info("task %s (%s) for job %s", task.id, wpb.TaskKind.Name(task.kind), task.job_id)
        kind = kind_of(task)
        stop = asyncio.Event()
        progress = TaskProgress(stage=kind.stage)
        heartbeat = asyncio.create_task(self._heartbeat(task, progress, stop))
        abandoning = asyncio.create_task(_relay(abandon, stop)) if abandon else None
        # One folder per lease: a rerun of the task (its lease taken back while this run
        # was cut off from the server) never shares files with this one.
        folders = contextlib.ExitStack()
        outcome = "error"
        self.metrics.task_started(kind.name)
        try:
            with full_disk_is_scratch_full():
                scratch = folders.enter_context(
                    scratch_folder(
                        Path(self.settings.scratch_dir), f"{task.id}-{task.lease_token:x}"
                    )
                )
                async with egress.session(self.policy) as session:
                    run = TaskRun(
                        task=task,
                        scratch=scratch,
                        progress=progress,
                        stop=stop,
                        inputs=TaskInputs(self.policy, session, stop, stage_gs_input),
                        settings=self.settings,
                        metrics=self.metrics,
                        origins=self.origins,
                        grants=self._reporter.grant_transfers,
                    )
                    started = time.monotonic()
                    result = await kind.run(run)
            await _stopped(heartbeat)
            await self._note_speed(task, result, time.monotonic() - started)
            await self._reporter.complete(task, result)
            outcome = "completed"
        except MediaError as error:
            await _stopped(heartbeat)
            mark_failed(error.code)
            if error.code == "CANCELED":
                outcome = "canceled"
                if abandon is not None and abandon.is_set():
                    outcome = "released"
                    await self._reporter.release(task, "the worker is draining")
                return
            outcome = "refused"  # until the server took the report
            await self._reporter.fail(
                task,
                job_pb2.JobError(
                    code=error.code,
                    message=error.message,
                    retryable=error.retryable,
                    stage=kind.stage,
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
                await self._reporter.fail(
                    task,
                    job_pb2.JobError(
                        code="WORKER_ERROR",
                        message="the worker failed unexpectedly",
                        retryable=True,
                    ),
                )
        finally:
            self.metrics.task_ended(kind.name, outcome)
            await _stopped(heartbeat)
            if abandoning is not None:
                await _stopped(abandoning)
            folders.close()

    async def _note_speed(self, task: wpb.Task, result: TaskResult, wall_seconds: float) -> None:
        """Records the finished task's speed and announces it before the result: a client
        that sees the job complete sees a fleet that knows the speed too."""
        media_seconds = 0.0
        if isinstance(result, wpb.TranscodeResult | wpb.ChunkResult):
            media_seconds = result.encoded_seconds
        try:
            measured = self.speeds.record(task, media_seconds, wall_seconds)
        except ValueError:
            # A figure for ETAs only: a spec it cannot class must not fail a finished encode.
            log.exception("task %s: its speed was not recorded", task.id)
            return
        if not measured:
            return
        if self._stub is not None and self._describe is not None:
            await announce_once(self._stub, self.metadata, self._describe())

    async def _heartbeat(self, task: wpb.Task, progress: TaskProgress, stop: asyncio.Event) -> None:
        """The task's heartbeat (worker.heartbeat), over this worker's connection."""
        assert self._stub is not None
        await keep_leased(
            self._stub,
            self.metadata,
            task,
            progress,
            stop,
            interval=heartbeat_interval(task, self.settings),
            worker_id=self.worker_id,
        )


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _stopped(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        await task
