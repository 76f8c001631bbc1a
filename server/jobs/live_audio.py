"""A running AUDIO piece's segments, reported with its heartbeat (ReportProgress.audio_so_far):
checked like a result (the shape here, the files in storage), kept on the task, and the live
playlists published again with them, so a player can start before the whole audio is done.

A list is taken only when it extends the one kept (the same segments first, at least one
more, and for fMP4 the same init segment and decode times): the live playlists and the
dynamic MPD never lose an entry, and a rerun of the piece (its lease lost), which stores the
same segments again from the first, changes nothing until it gets further. An fMP4 list's
init segment is checked in storage with its first segments, so it is there before any
segment is listed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.storage.media_types import mime_type_for

from ..domain import worker_reports
from ..domain.errors import FieldViolation, InvalidArgument
from ..domain.states import TaskKind, TaskStatus
from ..origins.directory import output_origin_of
from ..store.models import Task
from ..store.store import JobRecord, Store, Tx
from .outcomes import TaskOutcomes
from .result_checks import ResultChecks

log = logging.getLogger(__name__)

LockLeased = Callable[[Tx, str, int], Awaitable[tuple[Task, JobRecord]]]
Publish = Callable[[str, Task, dict[str, str]], Awaitable[None]]


class LiveAudio:
    def __init__(
        self,
        store: Store,
        checks: ResultChecks,
        outcomes: TaskOutcomes,
        lock_leased: LockLeased,
        publish: Publish,
    ) -> None:
        self.store = store
        self.checks = checks
        self.outcomes = outcomes
        self.lock_leased = lock_leased
        self.publish = publish

    async def reported(self, request: worker_service_pb2.ReportProgressRequest) -> None:
        """Take the audio's segments so far; InvalidArgument when they are not acceptable."""
        part = request.audio_so_far
        async with self.store.transaction() as tx:
            task = await tx.tasks.leased_task(request.task_id, request.lease_token)
            record = await tx.jobs.get_job(None, task.job_id)
        if task.kind != TaskKind.AUDIO or task.status != TaskStatus.LEASED:
            self._refuse(task, ["only a running AUDIO task reports its segments so far"])
        output = next(o for o in record.outputs if o.id == task.output_id)
        spec = job_pb2.OutputSpec.FromString(output.spec)
        if problems := worker_reports.audio_so_far_problems(part, spec):
            self._refuse(task, problems)
        kept = _kept(task)
        if not _extends(kept, part):
            return
        new = [
            job_pb2.OutputFile(path=s.path, size_bytes=s.size_bytes)
            for s in part.segments[len(kept.segments) :]
        ]
        if part.init_path and not kept.segments:
            new.insert(0, job_pb2.OutputFile(path=part.init_path, size_bytes=part.init_size_bytes))
        origin = output_origin_of(record.job, output)
        if problems := await self.checks.stored_problems(origin, task.job_id, output.id, new):
            self._refuse(task, problems)
        async with self.store.transaction() as tx:
            task, record = await self.lock_leased(tx, request.task_id, request.lease_token)
            if task.status != TaskStatus.LEASED or not _extends(_kept(task), part):
                return  # ended meanwhile, or a newer list was taken first
            stored = [(s.path, s.size_bytes) for s in part.segments]
            if part.init_path:
                stored.insert(0, (part.init_path, part.init_size_bytes))
            so_far = worker_service_pb2.ChunkResult(
                files=[
                    job_pb2.OutputFile(path=path, size_bytes=size, mime_type=mime_type_for(path))
                    for path, size in stored
                ],
                renditions=[part],
            )
            serialized = so_far.SerializeToString()
            if not await tx.tasks.record_audio_so_far(task.id, task.lease_token, serialized):
                return
            task.result = serialized
            if await self.outcomes.live_output(tx, record, task) is None:
                return
        # Published once committed, so that a Get lists every file a playlist names; from
        # what is committed then, under the job's lock, so that lists publish in order.
        async with self.store.transaction() as tx:
            task, record = await self.lock_leased(tx, request.task_id, request.lease_token)
            live = await self.outcomes.live_output(tx, record, task)
            if live is not None:
                await self.publish(origin, task, live)

    def _refuse(self, task: Task, problems: list[str]) -> None:
        log.warning(
            "audio segments of task %s (job %s, worker %r) refused: %s",
            task.id,
            task.job_id,
            task.worker_id,
            "; ".join(problems),
        )
        raise InvalidArgument([FieldViolation("audio_so_far", "; ".join(problems))])


def _kept(task: Task) -> worker_service_pb2.RenditionPart:
    if not task.result:
        return worker_service_pb2.RenditionPart()
    result = worker_service_pb2.ChunkResult.FromString(task.result)
    return result.renditions[0] if result.renditions else worker_service_pb2.RenditionPart()


def _extends(
    kept: worker_service_pb2.RenditionPart, part: worker_service_pb2.RenditionPart
) -> bool:
    """`part` lists more segments than `kept`, and begins with them: the same files, and for
    fMP4 the same init segment and decode times (a rerun's segments are the same bytes)."""
    count = len(kept.segments)
    if len(part.segments) <= count or list(part.segments[:count]) != list(kept.segments):
        return False
    if not count:
        return True
    same_init = (part.init_path, part.init_sha256, part.init_size_bytes, part.timescale) == (
        kept.init_path,
        kept.init_sha256,
        kept.init_size_bytes,
        kept.timescale,
    )
    return (
        same_init
        and list(part.decode_times[:count]) == list(kept.decode_times)
        and list(part.decode_durations[:count]) == list(kept.decode_durations)
    )
