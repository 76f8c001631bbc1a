"""A merge task: joins a chunked output's pieces, encoding nothing again. Adaptive outputs get
playlists over the segments the chunks stored; progressive ones the chunks joined by stream
copy with the audio muxed in (MP4)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.hls_playlists import AUDIO_RENDITION, Rendition, SegmentEntry

from ..media.describe import describe_output_file
from ..media.ffmpeg import run_ffmpeg
from ..media.merge import (
    build_concat_merge_command,
    describe_chunk_file,
    joined_renditions,
    write_hls_playlists,
)
from .run import TaskRun, describe_folder


async def merge_pieces(run: TaskRun) -> wpb.TranscodeResult:
    merge = run.task.merge
    notes = list(dict.fromkeys(n for c in [*merge.chunks, merge.audio] for n in c.notes))
    encoded = sum(chunk.encoded_seconds for chunk in merge.chunks)
    if any(chunk.renditions for chunk in merge.chunks):
        files = await _write_playlists(run)
    else:
        files = await _join_progressive(run)
    result = wpb.TranscodeResult(files=files, notes=notes, encoded_seconds=encoded)
    if run.task.merge.audio.HasField("loudness"):
        # The AUDIO piece normalized the whole audio; its figures are the output's.
        result.loudness.CopyFrom(run.task.merge.audio.loudness)
    return result


async def _write_playlists(run: TaskRun) -> list[job_pb2.OutputFile]:
    merge = run.task.merge
    out_dir = run.output_folder()
    pieces = [*merge.chunks, *([merge.audio] if merge.has_audio else [])]
    joined = joined_renditions(
        [[_rendition(r) for r in chunk.renditions] for chunk in merge.chunks]
    )
    audio = (
        _rendition(merge.audio.renditions[0])
        if merge.has_audio and merge.audio.renditions
        else None
    )
    segment_seconds = run.task.output_spec.segments.duration_seconds or 6.0
    await asyncio.to_thread(
        write_hls_playlists,
        out_dir,
        list(joined.values()),
        audio,
        segment_seconds=segment_seconds,
    )
    files = await describe_folder(out_dir)
    # The segments are where the chunks stored them; the result lists them too.
    files += [file for piece in pieces for file in piece.files]
    await run.store(out_dir, files, replace=False)
    return files


async def _join_progressive(run: TaskRun) -> list[job_pb2.OutputFile]:
    task, merge = run.task, run.task.merge
    out_dir = run.output_folder()
    work = run.scratch / "pieces"
    work.mkdir(parents=True, exist_ok=True)

    def fetch(path: str) -> Path:
        target = work / Path(path).name
        run.origins.backend(task.output_origin).fetch_file(f"{task.output_prefix}/{path}", target)
        return target

    wanted = [chunk.files[0].path for chunk in merge.chunks]
    if merge.has_audio:
        wanted.append(merge.audio.files[0].path)
    if task.storage_grants:
        fetched = await run.fetch_granted(wanted, work)
    else:
        fetched = {path: await asyncio.to_thread(fetch, path) for path in wanted}
    chunk_files = [
        await describe_chunk_file(fetched[chunk.files[0].path]) for chunk in merge.chunks
    ]
    audio_file = fetched[merge.audio.files[0].path] if merge.has_audio else None
    output = out_dir / "output.mp4"
    plan = build_concat_merge_command(
        chunks=chunk_files, audio=audio_file, work_dir=work, output=output
    )
    await run_ffmpeg(
        plan.argv,
        duration=plan.expected_duration,
        on_progress=run.progress.update,
        cancel_event=run.stop,
        min_report_interval=run.settings.progress_interval_seconds,
    )
    files = [await describe_output_file(output, out_dir)]
    # Replaces the prefix: the chunks' intermediate files go with it.
    await run.store(out_dir, files, replace=True)
    return files


def _rendition(message: wpb.RenditionPart) -> Rendition:
    return Rendition(
        name=message.name or AUDIO_RENDITION,
        codec=message.codec,
        width=message.width,
        height=message.height,
        frame_rate=message.frame_rate,
        segments=[SegmentEntry(s.path, s.duration_seconds, s.size_bytes) for s in message.segments],
    )
