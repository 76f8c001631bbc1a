"""Play while encoding: the playlists of a chunked HLS output (MPEG-TS or fMP4 segments) and the
dynamic MPD of a chunked DASH or CMAF output while its chunks finish.

After each chunk, the server (which alone knows which chunks are done) writes EVENT media
playlists listing the segments of the chunks done so far from the start (a gap would make a
player stall, so a later chunk that finished early waits for the ones before it), and the
master once every rendition has a segment. The merge later overwrites them with the final VOD
playlists (#EXT-X-ENDLIST). Every segment listed was checked in storage when its chunk was
accepted. DASH and CMAF get a dynamic manifest.mpd over the same segments (common.chunk_mpd,
the merge's writer), their SegmentTimeline from the decode times the pieces read from their
boxes: published once the video and (with audio) the audio each have a segment, as a player
cannot add an AdaptationSet later; the merge makes it static.
"""

from __future__ import annotations

import dataclasses

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.chunk_mpd import MPD_NAME, LiveMpd, chunked_mpd
from common.hls_playlists import (
    MASTER_NAME,
    Rendition,
    SegmentEntry,
    master_playlist,
    media_playlist,
    playlist_path,
)
from common.storage.media_types import mime_type_for

from .chunk_plan import DEFAULT_SEGMENT_SECONDS

T = job_pb2.OutputType


def _rendition(part: worker_service_pb2.RenditionPart, segments: list[SegmentEntry]) -> Rendition:
    return Rendition(
        part.name,
        part.codec,
        part.width,
        part.height,
        part.frame_rate,
        segments,
        init_path=part.init_path,
        init_sha256=part.init_sha256,
        timescale=part.timescale,
    )


def _entries(part: worker_service_pb2.RenditionPart) -> list[SegmentEntry]:
    """The part's segments, with their decode times and lengths when it has them (fMP4)."""
    times = list(part.decode_times) or [0] * len(part.segments)
    lengths = list(part.decode_durations) or [0] * len(part.segments)
    return [
        SegmentEntry(s.path, s.duration_seconds, s.size_bytes, time, length)
        for s, time, length in zip(part.segments, times, lengths, strict=True)
    ]


def live_manifests(
    spec: job_pb2.OutputSpec,
    chunks: list[worker_service_pb2.ChunkResult | None],
    audio: worker_service_pb2.ChunkResult | None,
    *,
    has_audio: bool,
    live: LiveMpd,
) -> tuple[dict[str, str], list[job_pb2.OutputFile]]:
    """({path: text} to publish, the output's files so far) from the chunks done, in order
    (None for a chunk not done yet), and the audio's segments so far: HLS playlists (HLS,
    CMAF) and the dynamic MPD (DASH, CMAF)."""
    segment_seconds = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
    done: list[worker_service_pb2.ChunkResult] = []
    for chunk in chunks:
        if chunk is None:
            break
        done.append(chunk)
    video = _joined(done)
    audio_rendition = None
    if audio is not None and audio.renditions:
        part = audio.renditions[0]
        audio_rendition = _rendition(part, _entries(part))
    texts: dict[str, str] = {}
    if spec.type in (T.OUTPUT_TYPE_HLS, T.OUTPUT_TYPE_CMAF):
        texts |= _playlists(video, audio_rendition, segment_seconds, has_audio=has_audio)
    ready = video and (audio_rendition is not None or not has_audio)
    if spec.type in (T.OUTPUT_TYPE_DASH, T.OUTPUT_TYPE_CMAF) and ready:
        texts[MPD_NAME] = chunked_mpd(
            video, audio_rendition, segment_seconds=segment_seconds, live=live
        )
    files = [
        job_pb2.OutputFile(path=path, size_bytes=len(text.encode()), mime_type=mime_type_for(path))
        for path, text in texts.items()
    ]
    for piece in [*done, *([audio] if audio is not None else [])]:
        files.extend(piece.files)
    return texts, files


def _joined(done: list[worker_service_pb2.ChunkResult]) -> list[Rendition]:
    """Each video rendition over the chunks done, picture and init segment from the first.
    fMP4: a chunk whose init segment or first decode time does not continue the chunks before
    it (the merge fails such an output) ends the lists there, so they never show a gap."""
    joined: dict[str, Rendition] = {}
    for chunk in done:
        following = {part.name: _rendition(part, _entries(part)) for part in chunk.renditions}
        if any(not _continues(joined.get(name), r) for name, r in following.items()):
            break
        for name, rendition in following.items():
            first = joined.get(name)
            joined[name] = (
                rendition
                if first is None
                else dataclasses.replace(first, segments=[*first.segments, *rendition.segments])
            )
    return list(joined.values())


def _continues(before: Rendition | None, after: Rendition) -> bool:
    if before is None or not before.init_path:
        return True
    last, following = before.segments[-1], after.segments[0]
    return (after.init_sha256, after.timescale) == (
        before.init_sha256,
        before.timescale,
    ) and following.decode_time == last.decode_time + last.decode_duration


def _playlists(
    video: list[Rendition],
    audio: Rendition | None,
    segment_seconds: float,
    *,
    has_audio: bool,
) -> dict[str, str]:
    texts: dict[str, str] = {}
    for rendition in [*video, *([audio] if audio is not None else [])]:
        # fMP4: the first chunk (always among those done) stored the init segment. The audio's
        # segments so far (reported while its task runs, all of them once it is done) are
        # EVENT until the merge, like the others, so players keep polling.
        texts[playlist_path(rendition.name)] = media_playlist(
            rendition.segments,
            target_seconds=segment_seconds,
            ended=False,
            init_path=rendition.init_path,
        )
    if video and (audio is not None or not has_audio):
        texts[MASTER_NAME] = master_playlist(video, audio)
    return texts
