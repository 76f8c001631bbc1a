"""Time on the input: the clip window an output covers, seeking, and how seconds are written.

Owns clip_window (start and length of a ClipSpec within the input, refusing a start past the
end), input_args (-ss before -i), seconds_arg (millisecond fixed notation) and the frame-time
helpers used to keep a seek on a frame that exists (frame_duration_of, last_frame_seek).
"""

from __future__ import annotations

import math

from kiln.v1 import job_pb2

from worker.media.errors import INPUT_ZERO_DURATION, MediaError


def frame_duration_of(video: job_pb2.StreamInfo) -> float:
    return 1 / video.frame_rate if video.frame_rate > 0 else 0.04


def last_frame_seek(clip_duration: float, frame_duration: float) -> float:
    """The latest -ss (seconds into the clip) that still yields a frame.

    Seeking to or past the last frame's timestamp yields nothing at all (and ffmpeg still exits
    0), so this aims half a frame before the last one, rounded down to the millisecond that
    seconds_arg writes.
    """
    return max(0.0, math.floor((clip_duration - 1.5 * frame_duration) * 1000) / 1000)


def input_args(input_path: str, start: float) -> list[str]:
    # -ss before -i seeks the demuxer (fast, keyframe then exact decode), and timestamps start at
    # zero, so -t and progress both count from the clip start.
    seek = ["-ss", seconds_arg(start)] if start > 0 else []
    return [*seek, "-i", input_path]


def clip_window(
    clip: job_pb2.ClipSpec, source_duration: float, what: str = "input"
) -> tuple[float, float]:
    """(start, length) of the part of the input (`what`, for the message) an output covers."""
    start = max(0.0, clip.start_seconds)
    remaining = source_duration - start
    if remaining <= 0:
        raise MediaError(
            INPUT_ZERO_DURATION,
            f"the clip starts at {start:g} s, after the end of the {source_duration:g} s {what}",
        )
    if clip.duration_seconds > 0:
        return start, min(clip.duration_seconds, remaining)
    return start, remaining


def seconds_arg(value: float) -> str:
    # Millisecond precision is finer than any frame; fixed notation avoids "1e-05".
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"
