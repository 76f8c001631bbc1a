"""Input facts a caller states instead of a probe (PlanJob), and the ones assumed without.

A plan's chunking and argument lists depend on what probing the input finds. PlanJob takes
those facts from the caller (a job's input_info, or ffprobe's figures) rather than reading
the input from the API process; they are checked like any other field, with bounds wide
enough for any real input and tight enough that no figure can make the plan huge.
"""

from __future__ import annotations

import math

from kiln.v1 import job_pb2

from .errors import FieldViolation

STREAM_KINDS = ("video", "audio", "subtitle", "data")
MAX_STREAMS = 64
MAX_DURATION_SECONDS = 7 * 24 * 3600.0
MAX_SIDE = 16384
MAX_FRAME_RATE = 1000.0
MAX_CHANNELS = 64
MAX_SAMPLE_RATE = 768_000
MAX_STREAM_INDEX = 1023
MAX_NAME = 64
ROTATIONS = (0, 90, 180, 270, -90, -180, -270)

# Without stated facts: a common camera or screen recording, one minute long.
ASSUMED_INPUT = job_pb2.InputInfo(
    container="mov,mp4,m4a,3gp,3g2,mj2",
    duration_seconds=60.0,
    streams=[
        job_pb2.StreamInfo(
            index=0,
            kind="video",
            codec="h264",
            width=1920,
            height=1080,
            frame_rate=30.0,
            pixel_format="yuv420p",
            is_default=True,
        ),
        job_pb2.StreamInfo(
            index=1, kind="audio", codec="aac", channels=2, sample_rate=48000, is_default=True
        ),
    ],
)


def input_fact_violations(info: job_pb2.InputInfo, path: str = "input") -> list[FieldViolation]:
    """Every figure of `info` out of its bounds, by field path."""
    violations = []

    def bounded(field: str, value: float, high: float) -> None:
        if not math.isfinite(value) or value < 0 or value > high:
            violations.append(FieldViolation(f"{path}.{field}", f"0 to {high:g}"))

    bounded("duration_seconds", info.duration_seconds, MAX_DURATION_SECONDS)
    if info.duration_seconds == 0 and math.isfinite(info.duration_seconds):
        violations.append(FieldViolation(f"{path}.duration_seconds", "required (seconds > 0)"))
    if info.size_bytes < 0:
        violations.append(FieldViolation(f"{path}.size_bytes", "not negative"))
    if info.bitrate < 0:
        violations.append(FieldViolation(f"{path}.bitrate", "not negative"))
    if len(info.container) > MAX_NAME:
        violations.append(FieldViolation(f"{path}.container", f"at most {MAX_NAME} characters"))
    if len(info.streams) > MAX_STREAMS:
        violations.append(FieldViolation(f"{path}.streams", f"at most {MAX_STREAMS} streams"))
        return violations
    for position, stream in enumerate(info.streams):
        where = f"streams[{position}]"
        if stream.kind not in STREAM_KINDS:
            violations.append(
                FieldViolation(f"{path}.{where}.kind", f"one of {', '.join(STREAM_KINDS)}")
            )
        bounded(f"{where}.index", stream.index, MAX_STREAM_INDEX)
        bounded(f"{where}.width", stream.width, MAX_SIDE)
        bounded(f"{where}.height", stream.height, MAX_SIDE)
        bounded(f"{where}.frame_rate", stream.frame_rate, MAX_FRAME_RATE)
        bounded(f"{where}.channels", stream.channels, MAX_CHANNELS)
        bounded(f"{where}.sample_rate", stream.sample_rate, MAX_SAMPLE_RATE)
        if stream.bitrate < 0:
            violations.append(FieldViolation(f"{path}.{where}.bitrate", "not negative"))
        if stream.rotation not in ROTATIONS:
            violations.append(FieldViolation(f"{path}.{where}.rotation", "0, 90, 180 or 270"))
        if stream.kind == "video" and (stream.width == 0 or stream.height == 0):
            violations.append(
                FieldViolation(f"{path}.{where}", "a video stream needs its width and height")
            )
        for name in ("codec", "pixel_format", "language"):
            if len(getattr(stream, name)) > MAX_NAME:
                violations.append(
                    FieldViolation(f"{path}.{where}.{name}", f"at most {MAX_NAME} characters")
                )
    return violations
