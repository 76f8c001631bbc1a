"""Finished pieces of a chunked output kept across attempts: a Retry re-encodes only the
chunks (and audio) that are missing.

Every CHUNK and AUDIO task carries a reuse key, a digest of everything its bytes depend on:
the job's organization, its input (URL, origin path and the facts the probe saw: size,
duration, container, streams), the output's resolved spec, the piece's kind and its range
(which holds the chunk length, segment numbering and timestamp lead). When a retried job's
input has been probed again, each planned piece whose key equals that of a DONE piece of an
earlier attempt of the same output, and whose files are all still in the output's storage
at the sizes that attempt recorded, starts DONE with that result; the others are queued.

Only the job's own earlier pieces are candidates, so a piece never crosses to another job,
let alone another organization; the key still names the organization and the input, so a
reused piece is one encoded from the same bytes for the same owner.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.storage.origins import Origins

from ..domain import worker_reports
from ..domain.new_records import KeptPiece
from ..domain.states import OutputStatus, TaskKind
from ..origins.directory import output_origin_of
from ..store.models import Job
from ..store.store import Store
from .transfers import output_prefix

if TYPE_CHECKING:
    # Only the type: result_checks reaches task_plan, which makes the keys.
    from .result_checks import StoredSizes

# Bumped when what a piece's bytes depend on changes in a way the key does not see (the
# chunk command's own arguments): keys made before then stop matching.
KEY_VERSION = "1"


def piece_key(
    job: Job,
    info: job_pb2.InputInfo,
    spec_bytes: bytes,
    kind: TaskKind,
    chunk: worker_service_pb2.ChunkRange,
) -> str:
    """The reuse key of one piece of an output of `job` (hex sha256)."""
    digest = hashlib.sha256()
    # Each part length-prefixed: no two different lists of parts read the same.
    for part in (
        KEY_VERSION.encode(),
        job.organization_id.encode(),
        job.input_url.encode(),
        job.input_origin_id.encode(),
        job.input_path.encode(),
        info.SerializeToString(deterministic=True),
        spec_bytes,
        str(kind).encode(),
        chunk.SerializeToString(deterministic=True),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


# {(output id, reuse key): the kept piece}
KeptPieces = dict[tuple[str, str], KeptPiece]


class PieceKeeper:
    """Finds what a retried job may keep: read before the probe's result is recorded, since
    storage is never read with the job locked."""

    def __init__(self, store: Store, stored_sizes: StoredSizes | None, files: Origins | None):
        self.store = store
        self.stored_sizes = stored_sizes
        self.files = files

    async def kept_pieces(self, probe_task_id: str) -> KeptPieces:
        """For the job of a probe reporting its facts: the earlier attempts' finished pieces
        of the job's unfinished outputs whose files are all in storage at their recorded
        sizes (the newest such piece per key)."""
        if self.stored_sizes is None:
            return {}
        async with self.store.reading() as tx:
            probe = await tx.tasks.task(probe_task_id)
            finished = await tx.tasks.finished_pieces(probe.job_id)
            if not finished:
                # A first attempt (pieces are made after the probe): the job is not read.
                return {}
            record = await tx.jobs.get_job(None, probe.job_id)
        kept: KeptPieces = {}
        for output in record.outputs:
            if output.status == OutputStatus.COMPLETED:
                continue
            pieces = [t for t in finished if t.output_id == output.id]
            if not pieces:
                continue
            origin = output_origin_of(record.job, output)
            if self.files is not None:
                await self.files.ensure([origin])
            sizes = await asyncio.to_thread(
                self.stored_sizes, origin, output_prefix(record.job.id, output.id)
            )
            for task in pieces:
                assert task.reuse_key is not None and task.result is not None
                if (output.id, task.reuse_key) in kept:
                    continue
                result = worker_service_pb2.ChunkResult.FromString(task.result)
                if not result.files or worker_reports.stored_file_problems(result.files, sizes):
                    continue  # removed, or changed since: encoded again
                kept[(output.id, task.reuse_key)] = KeptPiece(task.id, task.result)
        return kept


def reuse_note(reused: int, count: int) -> str:
    """The note of a retried chunked output: how many of its chunks were kept."""
    return f"chunks reused: {reused} of {count}"
