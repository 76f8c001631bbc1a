"""The AUDIO piece of a chunked HLS, DASH or CMAF output, stored and reported segment by segment
while it encodes: the server lists those segments in the live playlists and the dynamic MPD,
so a player can start once the first video chunk is done instead of waiting for the whole
audio (a long input's audio takes tens of seconds to encode on its own).

FFmpeg rewrites the rendition's EVENT playlist after each segment it closes, so every segment
the playlist names is complete. Each new one is stored beside the others (the same file the
piece's final upload stores again, unchanged) and the heartbeat carries the list so far.
fMP4 segments go with their init segment (stored with the first ones, before the server is
told of any) and each one's decode time and length read from its boxes, as a chunk reports
them: the MPD's SegmentTimeline is written from those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from ..media.codec_strings import codec_string, probe_first_stream
from ..media.hls_master import read_media_playlist
from ..media.merge import fmp4_segments
from .run import TaskRun

log = logging.getLogger(__name__)

# How often the playlist is looked at: a segment of audio is encoded in a fraction of this.
LOOK_SECONDS = 0.25


@contextlib.asynccontextmanager
async def audio_reported_while_encoding(
    run: TaskRun, out_dir: Path, playlist: Path, name: str
) -> AsyncIterator[None]:
    """Stores and reports the audio's new segments beside the body (the encode); the piece's
    result, sent when it ends, lists them all."""
    state = _LiveAudio(run, out_dir, playlist, name)
    looking = asyncio.create_task(state.keep_looking())
    try:
        yield
    finally:
        looking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await looking


class _LiveAudio:
    def __init__(self, run: TaskRun, out_dir: Path, playlist: Path, name: str) -> None:
        self.run = run
        self.out_dir = out_dir
        self.playlist = playlist
        self.part = wpb.RenditionPart(name=name)

    async def keep_looking(self) -> None:
        while True:
            await asyncio.sleep(LOOK_SECONDS)
            try:
                await self.store_new_segments()
            except Exception as error:
                # Playing while encoding is a convenience: the piece goes on, and its result
                # (stored and checked when it ends) lists every segment.
                log.warning("task %s: audio segments not stored early: %s", self.run.task.id, error)
                return

    async def store_new_segments(self) -> None:
        if not self.playlist.exists():
            return
        playlist = await asyncio.to_thread(read_media_playlist, self.playlist)
        new = playlist.segments[len(self.part.segments) :]
        if not new:
            return
        init = playlist.init_segment
        if not self.part.codec:
            self.part.codec = codec_string(await probe_first_stream(init, new[0][0]))
        # Linked into a folder of their own, which is uploaded as it is: only the new files
        # (and, with the first ones, the fMP4 init segment the playlist names).
        staging = self.run.scratch / f"live-audio-{len(self.part.segments):05d}"
        paths = [path for path, _ in new]
        if init is not None and not self.part.init_path:
            paths.insert(0, init)
        files = []
        for path in paths:
            target = staging / path.relative_to(self.out_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(os.link, path, target)
            # Sizes only: an ffprobe per segment would cost more than encoding it, and the
            # piece's result describes every file when it ends.
            size = (await asyncio.to_thread(target.stat)).st_size
            relative = target.relative_to(staging).as_posix()
            files.append(job_pb2.OutputFile(path=relative, size_bytes=size))
        await self.run.store(staging, files, replace=False)
        if init is None:
            for (path, duration), file in zip(new, files, strict=True):
                self.part.segments.add(
                    path=path.relative_to(self.out_dir).as_posix(),
                    duration_seconds=duration,
                    size_bytes=file.size_bytes,
                )
        else:
            await self._add_fmp4(init, [path for path, _ in new])
        report = wpb.RenditionPart()
        report.CopyFrom(self.part)
        self.run.progress.audio_so_far = report

    async def _add_fmp4(self, init: Path, paths: list[Path]) -> None:
        """The segments with their decode times and lengths from their boxes (as the piece's
        result will give them), and the init segment's path, digest, size and timescale."""
        segments, facts = await asyncio.to_thread(fmp4_segments, self.out_dir, init, paths)
        if self.part.init_path and facts["init_sha256"] != self.part.init_sha256:
            raise RuntimeError("the audio's init segment changed while it encoded")
        self.part.init_path = facts["init_path"]
        self.part.init_sha256 = facts["init_sha256"]
        self.part.timescale = facts["timescale"]
        self.part.init_size_bytes = (await asyncio.to_thread(init.stat)).st_size
        for segment in segments:
            self.part.segments.add(
                path=segment.path,
                duration_seconds=segment.duration_seconds,
                size_bytes=segment.size_bytes,
            )
            self.part.decode_times.append(segment.decode_time)
            self.part.decode_durations.append(segment.decode_duration)
