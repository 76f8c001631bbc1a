"""A merge task: joins a chunked output's pieces, encoding nothing again. Adaptive outputs get
playlists over the segments the chunks stored (HLS, fMP4 HLS; CMAF also gets the MPD, DASH
only the MPD); progressive ones the chunks joined by stream
copy with the audio muxed in (MP4). The output's text tracks are read here, once, and added to
the joined output whole: WebVTT renditions cut at the joined video's segment boundaries and
mapped to its first timestamp (HLS), mov_text tracks and .vtt sidecars (MP4)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.chunk_mpd import MPD_NAME, chunked_mpd, static_after_seconds
from common.hls_playlists import (
    AUDIO_RENDITION,
    Rendition,
    SegmentEntry,
    muxed_segment_path,
)
from common.output_types import muxes_audio_into_variants

from ..media.errors import ENCODE_FAILED, MediaError
from ..media.merge import (
    build_concat_merge_command,
    describe_chunk_file,
    joined_renditions,
    write_hls_playlists,
)
from ..media.text_tracks import (
    PreparedTrack,
    first_timestamp,
    name_hls_text_renditions,
    write_sidecars,
)
from ..media.ts_mux import VariantToMux, build_mux_command
from .run import TaskRun, describe_folder
from .text import read_merged_text_tracks


async def merge_pieces(run: TaskRun) -> wpb.TranscodeResult:
    started = time.monotonic()
    merge = run.task.merge
    notes = list(dict.fromkeys(n for c in [*merge.chunks, merge.audio] for n in c.notes))
    encoded = sum(chunk.encoded_seconds for chunk in merge.chunks)
    # Before anything is joined: a bad subtitle file fails the output without a half-merge.
    text_tracks = await read_merged_text_tracks(run)
    if any(chunk.renditions for chunk in merge.chunks):
        files = await _write_playlists(run, text_tracks, started)
    else:
        files = await _join_progressive(run, text_tracks)
    result = wpb.TranscodeResult(files=files, notes=notes, encoded_seconds=encoded)
    if run.task.merge.audio.HasField("loudness"):
        # The AUDIO piece normalized the whole audio; its figures are the output's.
        result.loudness.CopyFrom(run.task.merge.audio.loudness)
    return result


async def _write_playlists(
    run: TaskRun, text_tracks: list[PreparedTrack], started: float
) -> list[job_pb2.OutputFile]:
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
    spec = run.task.output_spec
    segment_seconds = spec.segments.duration_seconds or 6.0
    variants = list(joined.values())
    muxed: list[Rendition] = []
    muxed_files: list[job_pb2.OutputFile] = []
    if audio is not None and muxes_audio_into_variants(spec):
        # Stored before any playlist names them.
        muxed, muxed_files = await _mux_audio_into_variants(run, variants, audio)
    written: list[Path] = []
    if spec.type in (job_pb2.OUTPUT_TYPE_DASH, job_pb2.OUTPUT_TYPE_CMAF):
        manifest = out_dir / MPD_NAME
        text = chunked_mpd(variants, audio, segment_seconds=segment_seconds)
        # The server published the dynamic MPD listing every segment before this task could
        # be claimed: the static one replaces it once every player has read that one.
        wait = static_after_seconds(segment_seconds) - (time.monotonic() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.stop.wait(), timeout=max(wait, 0.0))
        await asyncio.to_thread(manifest.write_text, text, "utf-8")
    if spec.type in (job_pb2.OUTPUT_TYPE_HLS, job_pb2.OUTPUT_TYPE_CMAF):
        written = await asyncio.to_thread(
            write_hls_playlists,
            out_dir,
            variants,
            audio,
            segment_seconds=segment_seconds,
            muxed=muxed,
        )
    if text_tracks:
        # MPEG-TS HLS only: outputs in fMP4 with text tracks are not chunked (chunk_plan).
        # Cut like the first variant's segments, mapped to its first picture's timestamp
        # (the chunks' lead plus the MPEG-TS muxer's delay), read from its first segment.
        first = (muxed or variants)[0].segments[0].path
        fetched = await _fetch_pieces(run, [first], run.scratch / "text-timing")
        await name_hls_text_renditions(
            written[0],
            text_tracks,
            [segment.duration_seconds for segment in (muxed or variants)[0].segments],
            await first_timestamp(None, fetched[first]),
        )
    files = muxed_files + await describe_folder(out_dir)
    # The segments are where the pieces (and the remux) stored them; the result lists them.
    files += [file for piece in pieces for file in piece.files]
    await run.store(out_dir, files, replace=False)
    return files


async def _mux_audio_into_variants(
    run: TaskRun, variants: list[Rendition], audio: Rendition
) -> tuple[list[Rendition], list[job_pb2.OutputFile]]:
    """Every variant's segments with the audio of their span muxed in (stream copy), stored;
    returns the variants as the final playlists name them, and the files stored."""
    pieces = run.scratch / "pieces"
    audio_files = await _fetch_pieces(run, [s.path for s in audio.segments], pieces / "audio")
    to_mux = []
    for variant in variants:
        paths = [segment.path for segment in variant.segments]
        fetched = await _fetch_pieces(run, paths, pieces / variant.name)
        first = await first_timestamp(None, fetched[paths[0]])
        to_mux.append(VariantToMux(variant, [fetched[path] for path in paths], first))
    out_dir = run.scratch / "muxed"
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = build_mux_command(
        variants=to_mux,
        audio_files=[audio_files[s.path] for s in audio.segments],
        work_dir=pieces,
        out_dir=out_dir,
    )
    await run.run_on_pieces(plan)
    made = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}
    wanted = {p.relative_to(out_dir).as_posix() for p in plan.outputs}
    if made != wanted:
        # A cut off the segment grid (a keyframe missing where a segment starts) would
        # shift every following segment against the playlists.
        raise MediaError(
            ENCODE_FAILED,
            f"the audio remux made {len(made)} segments where the video has {len(wanted)}",
        )
    files = await describe_folder(out_dir)
    await run.store(out_dir, files, replace=False)
    sizes = {file.path: file.size_bytes for file in files}
    codecs = f",{audio.codec}" if audio.codec else ""
    muxed = [
        dataclasses.replace(
            variant,
            codec=f"{variant.codec}{codecs}" if variant.codec else "",
            segments=[
                SegmentEntry(
                    muxed_segment_path(s.path),
                    s.duration_seconds,
                    sizes[muxed_segment_path(s.path)],
                )
                for s in variant.segments
            ],
        )
        for variant in variants
    ]
    return muxed, files


async def _fetch_pieces(run: TaskRun, wanted: list[str], work: Path) -> dict[str, Path]:
    """Files the pieces stored under the output's prefix, downloaded into `work` by name
    (one folder per rendition: every rendition names its segments alike)."""
    task = run.task
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)

    def fetch(path: str) -> Path:
        target = work / Path(path).name
        run.origins.backend(task.output_origin).fetch_file(f"{task.output_prefix}/{path}", target)
        return target

    if task.storage_grants:
        return await run.fetch_granted(wanted, work)
    return {path: await asyncio.to_thread(fetch, path) for path in wanted}


async def _join_progressive(
    run: TaskRun, text_tracks: list[PreparedTrack]
) -> list[job_pb2.OutputFile]:
    merge = run.task.merge
    out_dir = run.output_folder()
    wanted = [chunk.files[0].path for chunk in merge.chunks]
    if merge.has_audio:
        wanted.append(merge.audio.files[0].path)
    work = run.scratch / "pieces"
    fetched = await _fetch_pieces(run, wanted, work)
    chunk_files = [
        await describe_chunk_file(fetched[chunk.files[0].path]) for chunk in merge.chunks
    ]
    audio_file = fetched[merge.audio.files[0].path] if merge.has_audio else None
    output = out_dir / "output.mp4"
    plan = build_concat_merge_command(
        chunks=chunk_files,
        audio=audio_file,
        work_dir=work,
        output=output,
        text_tracks=text_tracks,
    )
    await run.run_on_pieces(plan)
    await write_sidecars(out_dir, text_tracks)
    files = await describe_folder(out_dir)
    # Replaces the prefix: the chunks' intermediate files go with it.
    await run.store(out_dir, files, replace=True)
    return files


def _rendition(message: wpb.RenditionPart) -> Rendition:
    # The decode times are lists beside the segments (fMP4 only; empty for MPEG-TS).
    times = list(message.decode_times) or [0] * len(message.segments)
    lengths = list(message.decode_durations) or [0] * len(message.segments)
    return Rendition(
        name=message.name or AUDIO_RENDITION,
        codec=message.codec,
        width=message.width,
        height=message.height,
        frame_rate=message.frame_rate,
        segments=[
            SegmentEntry(s.path, s.duration_seconds, s.size_bytes, time, length)
            for s, time, length in zip(message.segments, times, lengths, strict=True)
        ],
        init_path=message.init_path,
        init_sha256=message.init_sha256,
        timescale=message.timescale,
    )
