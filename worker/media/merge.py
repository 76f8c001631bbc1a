"""Chunked outputs after their pieces are encoded: what a chunk produced, and the merge.

measure_chunk_renditions reads what one chunk (or the audio task) of an adaptive output wrote:
each rendition's segments from ffmpeg's playlist (then deleted: the output's playlists are
written over all chunks), and the codec string and picture size from its first segment; for
fMP4, also the init segment's digest and timescale and each segment's decode time and length,
read from its boxes (worker.media.fmp4_timing).

An fMP4 rendition keeps ONE init segment, the first chunk's: every chunk's init must be the
same bytes (they are: the same encoder settings, and frag_discont leaves the init untouched by
-output_ts_offset), which joined_renditions checks by digest before anything is written, as it
checks that each chunk's first decode time is where the previous chunk's last segment ends.

Merging never re-encodes. Adaptive outputs get their playlists written over the segments the
chunks produced (common.hls_playlists, measured BANDWIDTH and CODECS); progressive outputs are
joined with the concat demuxer (stream copy), the audio muxed in and the index moved to the
front. Each concat entry carries its exact duration (frames x frame duration), so the next
chunk's first frame lands exactly one frame after the previous chunk's last. Text tracks are
not cut with the video: the merge adds them whole (worker.media.text_tracks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from kiln.v1 import job_pb2

from common.hls_playlists import (
    MASTER_NAME,
    MEDIA_PLAYLIST_NAME,
    MUXED_PLAYLIST_NAME,
    Rendition,
    SegmentEntry,
    master_playlist,
    media_playlist,
    playlist_path,
)
from worker.media.codec_strings import codec_string, probe_first_stream
from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.fmp4_timing import decode_span, media_timescale
from worker.media.hls_master import read_media_playlist
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.probe import ffprobe_int, run_ffprobe_json
from worker.media.text_tracks import PreparedTrack, progressive_text_args

OutputType = job_pb2.OutputType

PROBE_TIMEOUT_SECONDS = 60
CONCAT_LIST = "chunks.ffconcat"


async def measure_chunk_renditions(out_dir: Path, playlists: dict[str, Path]) -> list[Rendition]:
    """Each rendition a chunk wrote, with its segments (paths relative to out_dir)."""
    renditions = []
    for name, playlist_file in playlists.items():
        playlist = await asyncio.to_thread(read_media_playlist, playlist_file)
        if not playlist.segments:
            raise MediaError(ENCODE_FAILED, f"the chunk wrote no {name} segments")
        init = playlist.init_segment
        if init is None:
            segments = [
                SegmentEntry(
                    path=path.relative_to(out_dir).as_posix(),
                    duration_seconds=duration,
                    size_bytes=path.stat().st_size,
                )
                for path, duration in playlist.segments
            ]
            fmp4: dict[str, Any] = {}
        else:
            segments, fmp4 = await asyncio.to_thread(
                fmp4_segments, out_dir, init, [path for path, _ in playlist.segments]
            )
        stream = await probe_first_stream(init, playlist.segments[0][0])
        renditions.append(
            Rendition(
                name=name,
                codec=codec_string(stream),
                width=ffprobe_int(stream.get("width")),
                height=ffprobe_int(stream.get("height")),
                frame_rate=_rate(str(stream.get("avg_frame_rate") or "")),
                segments=segments,
                **fmp4,
            )
        )
        await asyncio.to_thread(playlist_file.unlink)
    return renditions


def fmp4_segments(
    out_dir: Path, init: Path, paths: list[Path]
) -> tuple[list[SegmentEntry], dict[str, Any]]:
    """The segments with their exact times from the boxes (the playlist's EXTINF is rounded
    to microseconds), and the init segment's path, digest and timescale."""
    init_bytes = init.read_bytes()
    timescale = media_timescale(init_bytes)
    segments = []
    for path in paths:
        data = path.read_bytes()
        start, length = decode_span(data)
        segments.append(
            SegmentEntry(
                path=path.relative_to(out_dir).as_posix(),
                duration_seconds=length / timescale,
                size_bytes=len(data),
                decode_time=start,
                decode_duration=length,
            )
        )
    facts = {
        "init_path": init.relative_to(out_dir).as_posix(),
        "init_sha256": hashlib.sha256(init_bytes).hexdigest(),
        "timescale": timescale,
    }
    return segments, facts


def joined_renditions(chunks: Sequence[Sequence[Rendition]]) -> dict[str, Rendition]:
    """Every rendition over the chunks in order: picture, codec and init segment from the
    first chunk. fMP4: raises MediaError(ENCODE_FAILED) when a chunk wrote another init
    segment than the first chunk (it would need its own, which one playlist or MPD
    Representation cannot name) or its decode times do not continue the previous chunk's."""
    joined: dict[str, Rendition] = {}
    for renditions in chunks:
        for rendition in renditions:
            first = joined.get(rendition.name)
            if first is None:
                joined[rendition.name] = rendition
                continue
            _check_fmp4_join(first, rendition)
            joined[rendition.name] = dataclasses.replace(
                first, segments=[*first.segments, *rendition.segments]
            )
    return joined


def _check_fmp4_join(before: Rendition, after: Rendition) -> None:
    if not before.init_sha256 and not after.init_sha256:
        return
    name = before.name
    if after.init_sha256 != before.init_sha256 or after.timescale != before.timescale:
        raise MediaError(
            ENCODE_FAILED, f"{name}: a chunk wrote another init segment than the first chunk"
        )
    last, following = before.segments[-1], after.segments[0]
    if following.decode_time != last.decode_time + last.decode_duration:
        raise MediaError(
            ENCODE_FAILED,
            f"{name}: {following.path} starts at decode time {following.decode_time}, "
            f"not where {last.path} ends ({last.decode_time + last.decode_duration})",
        )


def write_hls_playlists(
    out_dir: Path,
    video: Sequence[Rendition],
    audio: Rendition | None,
    *,
    segment_seconds: float,
    ended: bool = True,
    muxed: Sequence[Rendition] = (),
) -> list[Path]:
    """The media playlists and the master over the segments; returns the files written (the
    master first). `muxed`: the variants with the audio in their segments (chunked MPEG-TS
    after the merge's remux), each with its own playlist (MUXED_PLAYLIST_NAME), which the
    master names, without an audio rendition. The video-only and audio playlists are still
    written, ended: players that started on the live master read them to the end."""
    written = []
    for rendition in [*video, *([audio] if audio else [])]:
        written.append(
            _write_media_playlist(
                out_dir,
                rendition,
                MEDIA_PLAYLIST_NAME,
                ended=ended,
                segment_seconds=segment_seconds,
            )
        )
    for rendition in muxed:
        written.append(
            _write_media_playlist(
                out_dir,
                rendition,
                MUXED_PLAYLIST_NAME,
                ended=ended,
                segment_seconds=segment_seconds,
            )
        )
    master = out_dir / MASTER_NAME
    text = (
        master_playlist(muxed, None, variant_playlist=MUXED_PLAYLIST_NAME)
        if muxed
        else master_playlist(video, audio)
    )
    master.write_text(text, "utf-8")
    return [master, *written]


def _write_media_playlist(
    out_dir: Path, rendition: Rendition, name: str, *, ended: bool, segment_seconds: float
) -> Path:
    path = out_dir / playlist_path(rendition.name, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        media_playlist(
            rendition.segments,
            target_seconds=segment_seconds,
            ended=ended,
            init_path=rendition.init_path,
        ),
        "utf-8",
    )
    return path


@dataclass(frozen=True)
class ChunkFile:
    path: Path
    frames: int
    frame_duration: Fraction


async def describe_chunk_file(path: Path) -> ChunkFile:
    """Frames and frame duration of a chunk's video, as its container records them."""
    returncode, parsed, _ = await run_ffprobe_json(
        str(path),
        timeout=PROBE_TIMEOUT_SECONDS,
        extra_args=("-select_streams", "v:0", "-count_packets"),
    )
    streams = parsed.get("streams") or []
    if returncode != 0 or not streams:
        raise MediaError(ENCODE_FAILED, f"{path.name}: the chunk cannot be read back")
    stream = streams[0]
    frames = ffprobe_int(stream.get("nb_read_packets")) or ffprobe_int(stream.get("nb_frames"))
    rate = _fraction(str(stream.get("r_frame_rate") or ""))
    if frames <= 0 or rate <= 0:
        raise MediaError(ENCODE_FAILED, f"{path.name}: the chunk has no frames")
    return ChunkFile(path, frames, 1 / rate)


def concat_list(chunks: Sequence[ChunkFile]) -> str:
    """An ffconcat list naming each chunk with its exact duration (frames x frame duration)."""
    lines = ["ffconcat version 1.0"]
    for chunk in chunks:
        seconds = chunk.frames * chunk.frame_duration
        lines += [f"file '{chunk.path.name}'", f"duration {float(seconds):.9f}"]
    return "\n".join(lines) + "\n"


def build_concat_merge_command(
    *,
    chunks: Sequence[ChunkFile],
    audio: Path | None,
    work_dir: Path,
    output: Path,
    ffmpeg: str = "ffmpeg",
    text_tracks: Sequence[PreparedTrack] = (),
) -> CommandPlan:
    """Joins the chunks (stream copy), muxes in the audio and the text tracks (mov_text, from
    the worker's WebVTT of each), moves the index to the front.

    The joined video starts at 0, as the WebVTT's cues do: they are on the output's timeline.
    The list and the chunks live in `work_dir` only: the concat demuxer is told to open
    nothing but plain files named in it (`-safe 1` refuses anything with a path).
    """
    listing = work_dir / CONCAT_LIST
    listing.write_text(concat_list(chunks), "utf-8")
    duration = float(sum((c.frames * c.frame_duration for c in chunks), Fraction(0)))
    argv = [ffmpeg, *COMMON_FLAGS, "-f", "concat", "-safe", "1", "-i", str(listing)]
    maps = ["-map", "0:v:0"]
    if audio is not None:
        argv += ["-i", str(audio)]
        maps += ["-map", "1:a:0"]
    text_inputs, text_outputs = progressive_text_args(
        list(text_tracks), OutputType.OUTPUT_TYPE_MP4, 2 if audio is not None else 1
    )
    argv += [*text_inputs, *maps, "-c", "copy", *text_outputs]
    argv += ["-movflags", "+faststart", "-f", "mp4", str(output)]
    return CommandPlan(argv=argv, outputs=[output], expected_duration=duration)


def _fraction(value: str) -> Fraction:
    numerator, _, denominator = value.partition("/")
    try:
        result = Fraction(int(numerator), int(denominator or "1"))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return result


def _rate(value: str) -> float:
    return float(_fraction(value))
