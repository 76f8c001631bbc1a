"""The rungs of an adaptive ladder: which of the spec's video variants are encoded, at what
size and frame rate, and with what keyframe interval so that every rung cuts its segments at
the same instants."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kiln.v1 import job_pb2

from worker.media.containers import Container
from worker.media.encoders import VIDEO_ENCODERS
from worker.media.errors import INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.geometry import display_size, even_floor, exceeds_source, output_dimensions

VideoCodec = job_pb2.VideoCodec
OutputType = job_pb2.OutputType


@dataclass(frozen=True)
class LadderRung:
    """One video variant as it will be encoded."""

    # Position in spec.video, which notes refer to.
    spec_index: int
    variant: job_pb2.VideoVariant
    codec: int
    width: int
    height: int
    frame_rate: float
    gop_frames: int


def plan_rungs(
    spec: job_pb2.OutputSpec,
    video: job_pb2.StreamInfo,
    container: Container,
    segment_seconds: float,
    notes: list[str],
) -> list[LadderRung]:
    """The variants to encode, in spec order, with sizes and GOPs.

    A variant above the source (without allow_upscale) adds nothing a player could use: it is
    dropped when another variant already has the source size, and otherwise the first such
    variant is capped to the source and later ones, which would duplicate it, are dropped.
    """
    source_width, source_height = display_size(video)
    source_size = (even_floor(source_width), even_floor(source_height))
    above = [exceeds_source(variant, video) for variant in spec.video]
    fitting_sizes = {
        output_dimensions(variant, video, index=index, notes=[])
        for index, variant in enumerate(spec.video)
        if not above[index]
    }
    source_covered = source_size in fitting_sizes

    rungs: list[LadderRung] = []
    for index, variant in enumerate(spec.video):
        codec = variant.codec or container.video_codecs[0]
        if codec not in container.video_codecs:
            package = OutputType.Name(spec.type)
            raise OutputSpecError(
                f"variant {index}: {VideoCodec.Name(codec)} cannot go into {package}"
            )
        if above[index]:
            if source_covered:
                notes.append(
                    f"variant {index}: {variant.resolution} above source "
                    f"{source_width}x{source_height}, dropped"
                )
                continue
            source_covered = True
        width, height = output_dimensions(variant, video, index=index, notes=notes)
        frame_rate = variant.fps or video.frame_rate
        if frame_rate <= 0:
            raise MediaError(INPUT_NO_VIDEO, "the input's video stream has no frame rate")
        gop = ladder_gop(variant, codec, frame_rate, segment_seconds, index, notes)
        rungs.append(LadderRung(index, variant, codec, width, height, frame_rate, gop))
    return rungs


def ladder_gop(
    variant: job_pb2.VideoVariant,
    codec: int,
    frame_rate: float,
    segment_seconds: float,
    index: int,
    notes: list[str],
) -> int:
    """Keyframe interval in frames: one segment's worth.

    Rounded up, so the encoder's own keyframe never comes before the forced one at the segment
    boundary (at 29.97 fps the boundaries are 59 or 60 frames apart). A requested gop_frames is
    kept when a segment is a whole number of such GOPs, as boundaries then stay keyframes.
    """
    frames_per_segment = segment_seconds * frame_rate
    gop = max(1, math.ceil(frames_per_segment - 1e-6))
    whole_segment = abs(frames_per_segment - round(frames_per_segment)) < 1e-6
    if variant.gop_frames > 0:
        if whole_segment and round(frames_per_segment) % variant.gop_frames == 0:
            return variant.gop_frames
        notes.append(
            f"variant {index}: gop_frames {variant.gop_frames} ignored; keyframes every "
            f"{gop} frames keep the {segment_seconds:g} s segments aligned"
        )
    if not VIDEO_ENCODERS[codec].honours_forced_keyframes and not whole_segment:
        notes.append(
            f"variant {index}: {segment_seconds:g} s at {frame_rate:g} fps is not a whole number "
            f"of frames, so {VideoCodec.Name(codec)} segments may not align with other variants"
        )
    return gop
