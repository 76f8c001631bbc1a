"""Whether an output is cut into chunks, and where: a pure function of its spec and the probe.

A long input is encoded faster by several workers at once: the output's video is cut into
ranges of about KILN_CHUNK_SECONDS (adaptive outputs on segment boundaries, so every chunk
makes whole segments), each encoded by a CHUNK task; the audio is encoded once, whole, by an
AUDIO task; a MERGE task joins them. What is not chunked runs in one pass as before.

An HLS output's first chunk is short (KILN_FIRST_CHUNK_SECONDS: one segment, shorter than the
others when that is less than a segment), so a player can start once it and the audio's first
segment are done rather than after a whole chunk; the later chunks follow on the segment grid
from its end.

Chunking is exact only where frames are evenly spaced: a cut at time t then splits the frames
the same way in every process. Input whose real and average frame rates differ (variable
frame rate, or timestamps rounded to a coarse time base) runs in one pass, with a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.custom_command import covered_seconds
from common.output_types import ADAPTIVE, has_fmp4_segments

T = job_pb2.OutputType
VideoCodec = job_pb2.VideoCodec

DEFAULT_SEGMENT_SECONDS = 6.0
# Every MPEG-TS chunk and the audio shift their timestamps by this much, so no process writes a
# negative one (B-frame delay, AAC priming): a muxer would shift such a stream by an amount
# that depends on where it starts, which differs between the first chunk and the others.
TIMESTAMP_LEAD_SECONDS = 10.0
# A last chunk shorter than this fraction of a chunk joins the one before it.
SHORTEST_LAST_CHUNK = 0.25
# Codecs whose chunks join cleanly by stream copy (checked with the concat demuxer and HLS).
CHUNKED_CODECS = frozenset(
    {VideoCodec.VIDEO_CODEC_UNSPECIFIED, VideoCodec.VIDEO_CODEC_H264, VideoCodec.VIDEO_CODEC_H265}
)
UNEVEN_FRAMES_NOTE = (
    "encoded in one pass, not in chunks: the input's frames are not evenly spaced "
    "(variable frame rate or a coarse time base), and one pass keeps every timestamp exact"
)
AUDIO_TRACKS_NOTE = (
    "encoded in one pass, not in chunks: an output with several audio tracks is made in one pass"
)
BURN_IN_NOTE = (
    "encoded in one pass, not in chunks: an output with a burned-in text track is made in one "
    "pass, which draws the text onto every picture"
)
FMP4_TEXT_NOTE = (
    "encoded in one pass, not in chunks: text tracks are carried by chunked MPEG-TS HLS "
    "and MP4 only; an fMP4 HLS, DASH or CMAF output with text tracks is made in one pass"
)
OPUS_NOTE = (
    "encoded in one pass, not in chunks: a chunked DASH output's audio is AAC; "
    "Opus audio is made in one pass"
)
FMP4_FRAME_GRID_NOTE = (
    "encoded in one pass, not in chunks: the chunks of an fMP4 HLS, DASH or CMAF output must "
    "start on a frame, and at this frame rate a chunk of whole segments does not"
)
ENCRYPTION_NOTE = (
    "encoded in one pass, not in chunks: an encrypted output is made in one pass, which "
    "applies its keys (and their rotation) across all its segments"
)


@dataclass(frozen=True)
class ChunkSettings:
    # Inputs (clips) longer than this are chunked; 0 turns chunking off.
    threshold_seconds: float = 600.0
    chunk_seconds: float = 60.0
    # HLS: the first chunk's length (play while encoding starts once it is done); below a
    # segment it is one short segment, else rounded to whole segments; 0: as long as the rest.
    first_chunk_seconds: float = 2.0


@dataclass(frozen=True)
class ChunkDecision:
    # The chunks, in output order; empty when the output runs in one pass.
    chunks: list[worker_service_pb2.ChunkRange]
    has_audio: bool = False
    # Why a long output was not chunked, for the output's notes.
    note: str = ""


def plan_chunks(
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    settings: ChunkSettings,
    *,
    concatenated: bool = False,
) -> ChunkDecision:
    one_pass = ChunkDecision([])
    if settings.threshold_seconds <= 0 or settings.chunk_seconds <= 0 or concatenated:
        return one_pass
    if spec.HasField("custom") or not _chunkable_type(spec):
        return one_pass
    if any(v.codec not in CHUNKED_CODECS or v.fps > 0 for v in spec.video):
        return one_pass
    video = next((s for s in info.streams if s.kind == "video"), None)
    if video is None or video.frame_rate <= 0:
        return one_pass
    duration = output_seconds(spec, info.duration_seconds)
    if duration <= settings.threshold_seconds:
        return one_pass
    if video.variable_frame_rate:
        return ChunkDecision([], note=UNEVEN_FRAMES_NOTE)
    if any(track.burn_in for track in spec.text_tracks):
        # Carried text tracks do not depend on the chunks (the merge writes them once, over
        # the joined video); a burned-in one would have to be drawn by every chunk.
        return ChunkDecision([], note=BURN_IN_NOTE)
    if spec.audio_tracks:
        # Chunks merge one audio stream; the tracks are encoded in the one pass.
        return ChunkDecision([], note=AUDIO_TRACKS_NOTE)
    if spec.HasField("encryption"):
        # The keys (and a rotation's key boundaries) are applied by the one process that
        # segments the output; chunks would each start the key schedule again.
        return ChunkDecision([], note=ENCRYPTION_NOTE)
    fmp4 = has_fmp4_segments(spec)
    if fmp4 and spec.text_tracks:
        # The merge cuts WebVTT renditions against MPEG-TS timestamps only; DASH text sets
        # and fMP4 HLS subtitle renditions are written by the single pass's packaging.
        return ChunkDecision([], note=FMP4_TEXT_NOTE)
    if fmp4 and spec.audio.codec == job_pb2.AUDIO_CODEC_OPUS and not spec.audio.disabled:
        # The audio piece is cut by the hls muxer, like every fMP4 piece, and HLS is AAC.
        return ChunkDecision([], note=OPUS_NOTE)

    if spec.type in ADAPTIVE:
        segment = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
        length = segment * max(1, round(settings.chunk_seconds / segment))
        first = _first_chunk_seconds(settings.first_chunk_seconds, segment, length)
    else:
        segment = 0.0
        length = settings.chunk_seconds
        first = length
    if fmp4 and not (
        _whole_frames(length, video.frame_rate) and _whole_frames(first, video.frame_rate)
    ):
        # A chunk's first frame is at its start (the ladder's fps filter counts frames from
        # there): a start between two frames (12 s at 23.976 fps) would overlap the previous
        # chunk's last frame, which fMP4 decode times cannot hold (the merge refuses them;
        # measured at 23.976 fps: the first chunk ends at 288288/24000 s, the next starts at
        # 288000/24000 s).
        return ChunkDecision([], note=FMP4_FRAME_GRID_NOTE)
    starts = [0.0, *_grid(first, length, duration)]
    if len(starts) > 1 and duration - starts[-1] < length * SHORTEST_LAST_CHUNK:
        starts.pop()  # a short tail joins the chunk before it
    count = len(starts)
    if count < 2:
        return one_pass
    ends = [*starts[1:], duration]
    chunks = [
        worker_service_pb2.ChunkRange(
            index=index,
            count=count,
            start_seconds=start,
            end_seconds=end,
            first_segment=_segment_number(start, first, segment),
            # fMP4 needs no lead: its decode times are set exactly (worker.media.chunks).
            timestamp_offset_seconds=0.0 if fmp4 else TIMESTAMP_LEAD_SECONDS,
        )
        for index, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]
    audio = next((s for s in info.streams if s.kind == "audio"), None)
    return ChunkDecision(chunks, has_audio=audio is not None and not spec.audio.disabled)


def _first_chunk_seconds(wanted: float, segment: float, length: float) -> float:
    """The HLS first chunk's length: one segment of `wanted` seconds when that is less than a
    segment (its only segment is then shorter than the others, which HLS allows), else whole
    segments; never longer than the other chunks."""
    if wanted <= 0:
        return length
    if wanted < segment:
        return wanted
    return min(length, segment * round(wanted / segment))


def _grid(first: float, length: float, duration: float) -> list[float]:
    """Where the chunks after the first start: at `first`, then every `length` seconds."""
    count = max(0, math.ceil((duration - first) / length - 1e-9))
    return [first + position * length for position in range(count)]


def _segment_number(start: float, first: float, segment: float) -> int:
    """The number of the output segment a chunk starting at `start` begins with: the first
    chunk's segments, then one every `segment` seconds (numbered across the output)."""
    if not segment or start <= 0:
        return 0
    first_count = max(1, round(first / segment))
    return first_count + round((start - first) / segment)


def _chunkable_type(spec: job_pb2.OutputSpec) -> bool:
    if spec.type == T.OUTPUT_TYPE_MP4:
        return len(spec.video) == 1
    # HLS with MPEG-TS segments: every segment carries its own timestamps, so segments made
    # by different processes play as one stream. fMP4 (HLS, DASH, CMAF): every segment
    # carries its decode time (tfdt), and the chunks' init segments are the same bytes.
    return spec.type in ADAPTIVE


def _whole_frames(seconds: float, frame_rate: float) -> bool:
    frames = seconds * frame_rate
    return abs(frames - round(frames)) < 1e-3


def output_seconds(spec: job_pb2.OutputSpec, source_seconds: float) -> float:
    """How much of the source an output covers (its clip, if any)."""
    if spec.HasField("custom"):
        return covered_seconds(list(spec.custom.args), source_seconds)
    start = spec.clip.start_seconds if spec.HasField("clip") else 0.0
    remaining = max(source_seconds - start, 0.0)
    if spec.HasField("clip") and spec.clip.duration_seconds:
        return min(spec.clip.duration_seconds, remaining)
    return remaining
