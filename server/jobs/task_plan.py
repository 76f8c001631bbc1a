"""Which tasks a job needs: its probe, then per output one TRANSCODE task, or for a chunked
output its AUDIO task, its CHUNK tasks and, once they are done, its MERGE task."""

from __future__ import annotations

from datetime import timedelta

from kiln.v1 import job_pb2

from ..domain import ids
from ..domain.states import OutputStatus, TaskKind, TaskStatus
from ..store.models import Job, Task
from ..store.row_encoding import new_row
from ..store.store import JobRecord, now
from .chunk_plan import ChunkSettings, plan_chunks


def probe_task(job: Job) -> Task:
    return new_row(
        Task,
        id=ids.task_id(),
        job_id=job.id,
        output_id=None,
        kind=str(TaskKind.PROBE),
        status=str(TaskStatus.QUEUED),
        priority=job.priority,
        attempts=0,
        lease_token=0,
        worker_id="",
        created_at=now(),
    )


def output_task(job: Job, output_id: str, kind: TaskKind) -> Task:
    return Task(
        id=ids.task_id(),
        job_id=job.id,
        output_id=output_id,
        kind=str(kind),
        status=str(TaskStatus.QUEUED),
        priority=job.priority,
        attempts=0,
        lease_token=0,
        worker_id="",
        created_at=now(),
        progress=0.0,
    )


def transcode_tasks(record: JobRecord, chunking: ChunkSettings) -> list[Task]:
    """One TRANSCODE task per output still to make, or for a chunked output its AUDIO task
    and its CHUNK tasks (longest first, so the short last one does not end up alone at the
    end); created one microsecond apart so they are claimed in this order."""
    info = job_pb2.InputInfo.FromString(record.job.input_info or b"")
    tasks: list[Task] = []
    for output in record.outputs:
        if output.status != OutputStatus.PENDING:
            continue  # a retried PARTIAL job keeps its completed ones
        spec = job_pb2.OutputSpec.FromString(output.spec)
        decision = plan_chunks(
            spec, info, chunking, concatenated=bool(record.job.concat_input_urls)
        )
        if not decision.chunks:
            tasks.append(output_task(record.job, output.id, TaskKind.TRANSCODE))
            continue
        if decision.has_audio:
            # First: it is quick, and until it is done no player can start (the master
            # playlist names the audio rendition).
            task = output_task(record.job, output.id, TaskKind.AUDIO)
            task.chunk = decision.chunks[0].SerializeToString()
            tasks.append(task)
        by_length = sorted(
            decision.chunks, key=lambda c: c.end_seconds - c.start_seconds, reverse=True
        )
        for chunk in by_length:
            task = output_task(record.job, output.id, TaskKind.CHUNK)
            task.chunk_index = chunk.index
            task.chunk = chunk.SerializeToString()
            tasks.append(task)
    base = now()
    for position, task in enumerate(tasks):
        task.created_at = base + timedelta(microseconds=position)
    return tasks
