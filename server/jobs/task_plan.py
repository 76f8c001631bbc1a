"""Which tasks a job needs: its probe, then per output one TRANSCODE task, or for a chunked
output its AUDIO task, its CHUNK tasks and, once they are done, its MERGE task."""

from __future__ import annotations

from datetime import datetime, timedelta

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from ..domain import ids
from ..domain.new_records import KeptPiece, NewTask
from ..domain.states import PIECE_KINDS, OutputStatus, TaskKind
from ..store.store import JobRecord, now
from .chunk_plan import ChunkDecision, ChunkSettings, plan_chunks
from .chunk_reuse import KeptPieces, piece_key


def probe_task(job_id: str, priority: int) -> NewTask:
    return NewTask(
        id=ids.task_id(), job_id=job_id, kind=TaskKind.PROBE, priority=priority, created_at=now()
    )


def output_task(
    job_id: str,
    priority: int,
    output_id: str,
    kind: TaskKind,
    *,
    created_at: datetime | None = None,
    chunk: worker_service_pb2.ChunkRange | None = None,
    reuse_key: str | None = None,
    kept: KeptPiece | None = None,
) -> NewTask:
    return NewTask(
        id=ids.task_id(),
        job_id=job_id,
        kind=kind,
        priority=priority,
        created_at=created_at or now(),
        output_id=output_id,
        chunk_index=chunk.index if chunk is not None and kind == TaskKind.CHUNK else None,
        chunk=chunk.SerializeToString() if chunk is not None else None,
        reuse_key=reuse_key,
        kept=kept,
    )


def output_pieces(
    decision: ChunkDecision,
) -> list[tuple[TaskKind, worker_service_pb2.ChunkRange | None]]:
    """The tasks queued for one output once the input is probed, in claim order: its
    TRANSCODE, or its AUDIO (when it has audio) and its CHUNKs. (A chunked output's MERGE
    is queued once they are done.)"""
    if not decision.chunks:
        return [(TaskKind.TRANSCODE, None)]
    pieces: list[tuple[TaskKind, worker_service_pb2.ChunkRange | None]] = []
    if decision.has_audio:
        # First: it is quick, and until it is done no player can start (the master
        # playlist names the audio rendition).
        pieces.append((TaskKind.AUDIO, decision.chunks[0]))
    # Then the first chunk (an HLS output's is short): with the audio, all a player needs to
    # start. The rest longest first, so the short last one does not end up alone at the end.
    first, *rest = decision.chunks
    pieces.append((TaskKind.CHUNK, first))
    by_length = sorted(rest, key=lambda c: c.end_seconds - c.start_seconds, reverse=True)
    pieces.extend((TaskKind.CHUNK, chunk) for chunk in by_length)
    return pieces


def transcode_tasks(
    record: JobRecord, chunking: ChunkSettings, kept: KeptPieces | None = None
) -> list[NewTask]:
    """One TRANSCODE task per output still to make, or for a chunked output its AUDIO task
    and its CHUNK tasks (in output_pieces' order); created one microsecond apart so they are
    claimed in this order. A piece found in `kept` (a retry's finished pieces, chunk_reuse)
    starts DONE with its earlier result."""
    job = record.job
    info = job_pb2.InputInfo.FromString(job.input_info or b"")
    kept = kept or {}
    # (output, kind, chunk, reuse key) in the order they are to be claimed.
    planned: list[tuple[str, TaskKind, worker_service_pb2.ChunkRange | None, str | None]] = []
    for output in record.outputs:
        if output.status != OutputStatus.PENDING:
            continue  # a retried PARTIAL job keeps its completed ones
        spec = job_pb2.OutputSpec.FromString(output.spec)
        decision = plan_chunks(spec, info, chunking, concatenated=bool(job.concat_input_urls))
        for kind, chunk in output_pieces(decision):
            key = None
            if kind in PIECE_KINDS and chunk is not None:
                key = piece_key(job, info, output.spec, kind, chunk)
            planned.append((output.id, kind, chunk, key))
    base = now()
    return [
        output_task(
            job.id,
            job.priority,
            output_id,
            kind,
            created_at=base + timedelta(microseconds=position),
            chunk=chunk,
            reuse_key=key,
            kept=kept.get((output_id, key)) if key is not None else None,
        )
        for position, (output_id, kind, chunk, key) in enumerate(planned)
    ]
