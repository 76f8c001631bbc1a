"""Whether an output is cut into chunks, and where: a pure function of its spec and the probe.

A long input is encoded faster by several workers at once: the output's video is cut into
ranges of about KILN_CHUNK_SECONDS (adaptive outputs on segment boundaries, so every chunk
makes whole segments), each encoded by a CHUNK task; the audio is encoded once, whole, by an
AUDIO task; a MERGE task joins them. What is not chunked runs in one pass as before.

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

T = job_pb2.OutputType
VideoCodec = job_pb2.VideoCodec

DEFAULT_SEGMENT_SECONDS = 6.0
# Every chunk and the audio shift their timestamps by this much, so no process writes a
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
ENCRYPTION_NOTE = (
    "encoded in one pass, not in chunks: an encrypted output is made in one pass, which "
    "applies its keys (and their rotation) across all its segments"
)


@dataclass(frozen=True)
class ChunkSettings:
    # Inputs (clips) longer than this are chunked; 0 turns chunking off.
    threshold_seconds: float = 600.0
    chunk_seconds: float = 60.0


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

    if spec.type == T.OUTPUT_TYPE_HLS:
        segment = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
        length = segment * max(1, round(settings.chunk_seconds / segment))
    else:
        segment = 0.0
        length = settings.chunk_seconds
    count = max(1, math.ceil(duration / length - 1e-9))
    if count > 1 and duration - (count - 1) * length < length * SHORTEST_LAST_CHUNK:
        count -= 1
    if count < 2:
        return one_pass
    chunks = [
        worker_service_pb2.ChunkRange(
            index=index,
            count=count,
            start_seconds=index * length,
            end_seconds=duration if index == count - 1 else (index + 1) * length,
            first_segment=round(index * length / segment) if segment else 0,
            timestamp_offset_seconds=TIMESTAMP_LEAD_SECONDS,
        )
        for index in range(count)
    ]
    audio = next((s for s in info.streams if s.kind == "audio"), None)
    return ChunkDecision(chunks, has_audio=audio is not None and not spec.audio.disabled)


def _chunkable_type(spec: job_pb2.OutputSpec) -> bool:
    if spec.type == T.OUTPUT_TYPE_MP4:
        return len(spec.video) == 1
    # HLS with MPEG-TS segments: every segment carries its own timestamps, so segments made
    # by different processes play as one stream.
    return spec.type == T.OUTPUT_TYPE_HLS and (
        spec.hls.segment_format != job_pb2.HLS_SEGMENT_FORMAT_FMP4
    )


def output_seconds(spec: job_pb2.OutputSpec, source_seconds: float) -> float:
    """How much of the source an output covers (its clip, if any)."""
    if spec.HasField("custom"):
        return covered_seconds(list(spec.custom.args), source_seconds)
    start = spec.clip.start_seconds if spec.HasField("clip") else 0.0
    remaining = max(source_seconds - start, 0.0)
    if spec.HasField("clip") and spec.clip.duration_seconds:
        return min(spec.clip.duration_seconds, remaining)
    return remaining
