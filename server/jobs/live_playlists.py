"""Play while encoding: the playlists of a chunked HLS output (MPEG-TS or fMP4 segments) while
its chunks finish.

After each chunk, the server (which alone knows which chunks are done) writes EVENT media
playlists listing the segments of the chunks done so far from the start (a gap would make a
player stall, so a later chunk that finished early waits for the ones before it), and the
master once every rendition has a segment. The merge later overwrites them with the final VOD
playlists (#EXT-X-ENDLIST). Every segment listed was checked in storage when its chunk was
accepted.
"""

from __future__ import annotations

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.hls_playlists import (
    MASTER_NAME,
    Rendition,
    SegmentEntry,
    master_playlist,
    media_playlist,
    playlist_path,
)

from .chunk_plan import DEFAULT_SEGMENT_SECONDS


def _rendition(part: worker_service_pb2.RenditionPart, segments: list[SegmentEntry]) -> Rendition:
    return Rendition(
        part.name,
        part.codec,
        part.width,
        part.height,
        part.frame_rate,
        segments,
        init_path=part.init_path,
    )


def live_playlists(
    spec: job_pb2.OutputSpec,
    chunks: list[worker_service_pb2.ChunkResult | None],
    audio: worker_service_pb2.ChunkResult | None,
    *,
    has_audio: bool,
) -> tuple[dict[str, str], list[job_pb2.OutputFile]]:
    """({path: text} to publish, the output's files so far) from the chunks done, in order
    (None for a chunk not done yet), and the audio's segments so far."""
    segment_seconds = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
    done: list[worker_service_pb2.ChunkResult] = []
    for chunk in chunks:
        if chunk is None:
            break
        done.append(chunk)
    segments: dict[str, list[SegmentEntry]] = {}
    first: dict[str, worker_service_pb2.RenditionPart] = {}
    for chunk in done:
        for part in chunk.renditions:
            first.setdefault(part.name, part)
            segments.setdefault(part.name, []).extend(
                SegmentEntry(s.path, s.duration_seconds, s.size_bytes) for s in part.segments
            )
    texts: dict[str, str] = {}
    for name, entries in segments.items():
        # fMP4: the first chunk (always among those done) stored the init segment.
        texts[playlist_path(name)] = media_playlist(
            entries, target_seconds=segment_seconds, ended=False, init_path=first[name].init_path
        )
    audio_rendition = None
    if audio is not None and audio.renditions:
        part = audio.renditions[0]
        entries = [SegmentEntry(s.path, s.duration_seconds, s.size_bytes) for s in part.segments]
        audio_rendition = _rendition(part, entries)
        # The audio's segments so far (reported while its task runs, all of them once it is
        # done): EVENT until the merge, like the others, so players keep polling.
        texts[playlist_path(part.name)] = media_playlist(
            entries, target_seconds=segment_seconds, ended=False, init_path=part.init_path
        )
    if segments and (audio_rendition is not None or not has_audio):
        variants = [_rendition(first[name], entries) for name, entries in segments.items()]
        texts[MASTER_NAME] = master_playlist(variants, audio_rendition)
    files = [
        job_pb2.OutputFile(
            path=path,
            size_bytes=len(text.encode()),
            mime_type="application/vnd.apple.mpegurl",
        )
        for path, text in texts.items()
    ]
    for piece in [*done, *([audio] if audio is not None else [])]:
        files.extend(piece.files)
    return texts, files
