"""A worker's result checked before it is accepted: against its task, its spec and storage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.storage.origins import Origins

from ..domain import worker_reports
from ..domain.states import PIECE_KINDS, TaskKind
from ..origins.directory import is_origin_reference, output_origin_of
from ..store.models import Task
from ..store.store import Store
from . import outcomes
from .transfers import output_prefix

# (output origin, key prefix) -> {relative path: size in bytes} of what storage holds.
StoredSizes = Callable[[str, str], dict[str, int]]


class ResultChecks:
    """The checks of a result that names files, which read the output's storage: made
    before the result's transaction, since storage is never read with the job locked."""

    def __init__(
        self, store: Store, stored_sizes: StoredSizes | None, files: Origins | None
    ) -> None:
        self.store = store
        # Reads what a finished output really left in storage; None only in unit wiring
        # that never completes a transcode.
        self.stored_sizes = stored_sizes
        self.files = files

    async def problems(self, request: worker_service_pb2.CompleteTaskRequest) -> list[str]:
        """What is wrong with a result; storage is read outside any transaction."""
        async with self.store.transaction() as tx:
            task = await tx.tasks.leased_task(request.task_id, request.lease_token)
            record = await tx.jobs.get_job(None, task.job_id)
        plain = plain_problems(task, request)
        if plain is not None:
            return plain
        kind = request.WhichOneof("result")
        output = next(o for o in record.outputs if o.id == task.output_id)
        spec = job_pb2.OutputSpec.FromString(output.spec)
        info = job_pb2.InputInfo.FromString(record.job.input_info or b"")
        if kind == "chunk":
            chunk = worker_service_pb2.ChunkRange.FromString(task.chunk or b"")
            problems = worker_reports.chunk_problems(
                request.chunk,
                spec,
                chunk,
                audio=task.kind == TaskKind.AUDIO,
                output_seconds=outcomes.output_seconds(spec, info.duration_seconds),
            )
            return problems or await self._stored_problems(
                output_origin_of(record.job, output), record.job.id, output.id, request.chunk.files
            )
        expected = (
            None
            if record.job.concat_input_urls
            else outcomes.output_seconds(spec, info.duration_seconds)
        )
        problems = worker_reports.transcode_problems(
            request.transcode,
            spec,
            expected_seconds=expected,
            qc_required=task.kind == TaskKind.TRANSCODE,
        )
        if task.kind == TaskKind.MERGE and not problems:
            async with self.store.transaction() as tx:
                pieces = await outcomes.current_output_tasks(tx, record, output.id)
            problems = worker_reports.merge_problems(
                request.transcode, spec, outcomes.merge_plan(pieces)
            )
        return problems or await self._stored_problems(
            output_origin_of(record.job, output),
            record.job.id,
            output.id,
            request.transcode.files,
            replace=True,
        )

    async def stored_problems(
        self, origin: str, job_id: str, output_id: str, files: list[job_pb2.OutputFile]
    ) -> list[str]:
        """Each file is in the output's storage with the size given (a running AUDIO piece's
        segments so far)."""
        return await self._stored_problems(origin, job_id, output_id, files)

    async def _stored_problems(
        self, origin: str, job_id: str, output_id: str, files, *, replace: bool = False
    ) -> list[str]:
        """Each reported file is in the output's storage with the reported size.

        A whole output's result (`replace`) on an organization's origin also removes what an
        earlier attempt left under the prefix: workers there write through presigned PUTs and
        cannot delete, so the server does what put_directory does on the other storages."""
        if self.stored_sizes is None:
            return []
        if self.files is not None:
            await self.files.ensure([origin])
        prefix = output_prefix(job_id, output_id)
        sizes = await asyncio.to_thread(self.stored_sizes, origin, prefix)
        problems = worker_reports.stored_file_problems(files, sizes)
        if replace and not problems and self.files is not None and is_origin_reference(origin):
            stale = sorted(set(sizes) - {file.path for file in files})
            if stale:
                backend = self.files.backend(origin)
                await asyncio.to_thread(backend.delete_files, prefix, stale)
        return problems


# Results naming files: checked against the spec and storage before the result's transaction.
FILE_RESULTS = frozenset({"transcode", "chunk"})


def plain_problems(task: Task, request: worker_service_pb2.CompleteTaskRequest) -> list[str] | None:
    """The problems of a result judged by the task alone: an error, a probe's facts, or the
    wrong kind of result for the task. None for files of the right kind, which the spec and
    storage judge (ResultChecks.problems)."""
    kind = request.WhichOneof("result")
    if kind == "error":
        return worker_reports.error_problems(request.error)
    if task.kind == TaskKind.PROBE:
        if kind != "input_info":
            return ["a probe task must report input_info or an error"]
        return worker_reports.input_info_problems(request.input_info)
    if task.kind in PIECE_KINDS:
        if kind != "chunk":
            return ["a chunk or audio task must report a chunk result or an error"]
        return None
    if kind != "transcode":
        return ["a transcode task must report its files or an error"]
    return None
