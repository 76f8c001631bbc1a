"""Does a probed input have what the job's outputs need? Decided once, after probing.

The worker's probe task knows nothing of the outputs, so the server makes this call: a
job whose input cannot serve its outputs is REJECTED with a plain reason instead of
failing output by output later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from kiln.v1 import job_pb2

from common.output_types import IMAGES, PROGRESSIVE

from .audio_track_checks import input_audio_problem
from .text_track_checks import input_stream_problem

# Images one INTERVAL or SPRITE output may make: a film at one frame a second would
# otherwise be thousands of files (or a sheet no decoder opens).
MAX_SERIES_IMAGES = 1000
SAMPLED_MODES = (job_pb2.THUMBNAIL_MODE_INTERVAL, job_pb2.THUMBNAIL_MODE_SPRITE)
# What the worker samples at when a series names no interval (worker/media/images.py).
DEFAULT_INTERVAL_SECONDS = 10.0


def wants_video(spec: job_pb2.OutputSpec) -> bool:
    # A custom command on a video container makes video unless it drops it (-vn).
    custom_video = (
        spec.HasField("custom") and spec.type in PROGRESSIVE and "-vn" not in spec.custom.args
    )
    return bool(spec.video) or spec.type in IMAGES or custom_video


def input_problem(
    info: job_pb2.InputInfo, specs: Iterable[job_pb2.OutputSpec]
) -> job_pb2.JobError | None:
    specs = list(specs)
    video = [stream for stream in info.streams if stream.kind == "video"]
    audio = [stream for stream in info.streams if stream.kind == "audio"]
    if any(wants_video(spec) for spec in specs):
        if not video:
            return job_pb2.JobError(
                code="INPUT_NO_VIDEO",
                message="the input has no video stream, but an output asks for video",
            )
        if not any(stream.codec for stream in video):
            return job_pb2.JobError(
                code="INPUT_UNSUPPORTED_CODEC",
                message="the input's video codec cannot be decoded",
            )
    elif specs and not audio:
        return job_pb2.JobError(
            code="INPUT_NO_AUDIO", message="the input has no audio stream for the audio outputs"
        )
    for index, spec in enumerate(specs):
        if spec.type in IMAGES and spec.thumbnail.mode in SAMPLED_MODES:
            interval = spec.thumbnail.interval_seconds or DEFAULT_INTERVAL_SECONDS
            count = math.ceil(_clip_seconds(spec, info.duration_seconds) / interval - 1e-6)
            if count > MAX_SERIES_IMAGES:
                return job_pb2.JobError(
                    code="INPUT_TOO_LONG",
                    message=f"outputs[{index}]: {count} images at one every {interval:g} s of "
                    f"this input; at most {MAX_SERIES_IMAGES}: raise interval_seconds",
                )
    return input_stream_problem(info, specs) or input_audio_problem(info, specs)


def _clip_seconds(spec: job_pb2.OutputSpec, source_seconds: float) -> float:
    start = spec.clip.start_seconds if spec.HasField("clip") else 0.0
    remaining = max(source_seconds - start, 0.0)
    if spec.HasField("clip") and spec.clip.duration_seconds:
        return min(spec.clip.duration_seconds, remaining)
    return remaining
