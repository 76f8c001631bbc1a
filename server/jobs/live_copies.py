"""A chunked MPEG-TS ladder's live copies, removed once no player can still need them.

While its chunks run, a chunked MPEG-TS HLS ladder with audio is published over video-only
segments (`v0/seg_N.ts` behind the live `v0/index.m3u8`) and a separate audio rendition
(`audio/index.m3u8`, `audio/seg_N.ts`). Its merge muxes the audio into copies of every
variant's segments (`v0/muxed_N.ts` behind `v0/muxed.m3u8`), which the final master names,
and ends the live playlists without removing them: a player that started mid-job reads them
to their end (docs/chunking.md, *In players*). Kept for ever, they double the output's bytes.

So when the job ends, each such output that COMPLETED is given a time in the store
(`Output.live_copies_due_at`): the job's end plus a grace in which a player that started
mid-job can finish, by default the larger of 10 minutes and twice the output's duration
(`KILN_LIVE_COPIES_GRACE_SECONDS` sets it; 0 keeps them). The server's periodic sweep
(server/app.py, beside the lease reaper) removes what is due: the files the pieces reported
and the live playlists, from the output's result (what Get lists) and from its storage, through
the storage backend of its origin. A restart loses nothing: the time is in the store, and a
removal cut short is done again (deleting a file already gone is no error).

The pieces' reports (the CHUNK and AUDIO task rows, checked when they were accepted) say what
the live copies are, never a name pattern: the muxed ladder's files are never among them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.hls_playlists import AUDIO_RENDITION, MASTER_NAME, MUXED_PLAYLIST_NAME, playlist_path
from common.log_setup import job_log_context
from common.output_types import muxes_audio_into_variants
from common.storage.origins import Origins

from ..domain.states import PIECE_KINDS, OutputStatus, TaskStatus
from ..origins.directory import output_origin_of
from ..store.database import aware
from ..store.outage import log_round_failure
from ..store.store import JobRecord, Store, Tx, now
from .chunk_plan import output_seconds
from .transfers import output_prefix

log = logging.getLogger(__name__)

# The default grace's floor: a short output's viewer may pause, or start late in the job.
MIN_DEFAULT_GRACE_SECONDS = 600.0
# Outputs handled per sweep round: the rest wait for the next round, a few seconds later.
SWEEP_BATCH = 50


def grace_seconds(setting: float | None, seconds: float) -> float | None:
    """How long after its job completed an output of `seconds` keeps its live copies: the
    setting, or unset the larger of 10 minutes and twice the output (a player that started
    mid-job plays at most about the output's length, plus pauses); None keeps them."""
    if setting is None:
        return max(MIN_DEFAULT_GRACE_SECONDS, 2 * seconds)
    return setting if setting > 0 else None


def has_live_copies(spec: job_pb2.OutputSpec, result: worker_service_pb2.TranscodeResult) -> bool:
    """The output's merge wrote a muxed ladder beside the live one (a chunked MPEG-TS ladder
    with audio: its final playlists are muxed.m3u8), and the live one is still listed (its
    audio rendition's live playlist: gone once removed)."""
    paths = {file.path for file in result.files}
    return (
        muxes_audio_into_variants(spec)
        and any(path.rsplit("/", 1)[-1] == MUXED_PLAYLIST_NAME for path in paths)
        and playlist_path(AUDIO_RENDITION) in paths
    )


def live_copy_paths(pieces: Iterable[worker_service_pb2.ChunkResult]) -> set[str]:
    """The files that only the live playlists name: every file a piece reported (the chunks'
    video-only segments, the audio's segments) and each rendition's live playlist."""
    paths: set[str] = set()
    for piece in pieces:
        paths |= {file.path for file in piece.files}
        paths |= {playlist_path(part.name or AUDIO_RENDITION) for part in piece.renditions}
    # What the final master names is never a piece's file; kept out all the same, since a
    # removal cannot be undone.
    return {path for path in paths if not _in_final_ladder(path)}


def _in_final_ladder(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path == MASTER_NAME or name == MUXED_PLAYLIST_NAME or name.startswith("muxed_")


async def schedule_removal(
    tx: Tx, record: JobRecord, completed_at: datetime, setting: float | None
) -> None:
    """The job ends (COMPLETED, PARTIAL, FAILED or CANCELED): give each of its COMPLETED
    outputs with live copies the time they go. One given a time by an earlier end (a Retry of
    a PARTIAL job ends again) keeps it: the grace counts from the output's first end."""
    info = job_pb2.InputInfo.FromString(record.job.input_info or b"")
    for output in record.outputs:
        if (
            not output.result
            or output.status != OutputStatus.COMPLETED
            or output.live_copies_due_at is not None
        ):
            continue
        spec = job_pb2.OutputSpec.FromString(output.spec)
        result = worker_service_pb2.TranscodeResult.FromString(output.result)
        if not has_live_copies(spec, result):
            continue
        grace = grace_seconds(setting, output_seconds(spec, info.duration_seconds))
        if grace is None:
            continue
        due = completed_at + timedelta(seconds=grace)
        await tx.outputs.update_output(output.id, live_copies_due_at=due)
        output.live_copies_due_at = due


class LiveCopies:
    """Removes the live copies that are due: one round per call of the server's sweep."""

    def __init__(self, store: Store, files: Origins, setting: float | None) -> None:
        self.store = store
        self.files = files
        # KILN_LIVE_COPIES_GRACE_SECONDS: 0 keeps them, also those given a time before.
        self.setting = setting

    async def remove_due(self) -> int:
        """Remove every output's live copies that are due (a batch per round); returns how
        many outputs were done. A failure is logged and that output tried again next round."""
        if self.setting is not None and self.setting <= 0:
            return 0
        async with self.store.reading() as tx:
            due = await tx.outputs.live_copies_due(now(), SWEEP_BATCH)
        done = 0
        for job_id, output_id in due:
            try:
                with job_log_context(job_id):
                    done += await self.remove(job_id, output_id)
            except Exception:
                log_round_failure(
                    log, "removing the live copies of %s (job %s) failed", output_id, job_id
                )
        return done

    async def remove(self, job_id: str, output_id: str) -> bool:
        """Take the output's live copies off its result, delete them from its storage, then
        clear its time; in that order, so a crash in between leaves the time set and the next
        round deletes again what may be left. False when it was no longer due."""
        async with self.store.transaction() as tx:
            record = await tx.jobs.get_job(None, job_id, lock=True)
            output = next((o for o in record.outputs if o.id == output_id), None)
            moment = now()
            if (
                output is None
                or output.status != OutputStatus.COMPLETED
                or (due := aware(output.live_copies_due_at)) is None
                or due > moment
            ):
                return False
            pieces = [
                worker_service_pb2.ChunkResult.FromString(task.result)
                for task in await tx.tasks.output_tasks(output_id)
                if task.kind in PIECE_KINDS and task.status == TaskStatus.DONE and task.result
            ]
            paths = live_copy_paths(pieces)
            result = worker_service_pb2.TranscodeResult.FromString(output.result or b"")
            kept = [file for file in result.files if file.path not in paths]
            if len(kept) < len(result.files):
                listed = len(result.files) - len(kept)
                del result.files[:]
                result.files.extend(kept)
                result.notes.append(f"live copies removed after the grace: {listed} files")
                await tx.outputs.update_output(output_id, result=result.SerializeToString())
            origin = output_origin_of(record.job, output)
        deleted = await self._delete(origin, job_id, output_id, sorted(paths))
        async with self.store.transaction() as tx:
            await tx.outputs.live_copies_removed(output_id)
        log.info("live copies of %s removed: %d files deleted", output_id, deleted)
        return True

    async def _delete(self, origin: str, job_id: str, output_id: str, paths: list[str]) -> int:
        if not paths:
            return 0
        await self.files.ensure([origin])
        try:
            backend = self.files.backend(origin)
        except FileNotFoundError:
            # The output's origin was deleted: nothing of it can be reached any more.
            return 0
        return await asyncio.to_thread(
            backend.delete_files, output_prefix(job_id, output_id), paths
        )
