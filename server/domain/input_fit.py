"""Does a probed input have what the job's outputs need? Decided once, after probing.

The worker's probe task knows nothing of the outputs, so the server makes this call: a
job whose input cannot serve its outputs is REJECTED with a plain reason instead of
failing output by output later.
"""

from __future__ import annotations

from collections.abc import Iterable

from kiln.v1 import job_pb2

from .validation import IMAGES


def wants_video(spec: job_pb2.OutputSpec) -> bool:
    return bool(spec.video) or spec.type in IMAGES


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
    return None
