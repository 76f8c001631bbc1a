"""System presets: read-only output specs with stable slugs, shared by every organization."""

from __future__ import annotations

from kiln.v1 import job_pb2

T = job_pb2.OutputType
V = job_pb2.VideoCodec
Q = job_pb2.Quality


def _mp4(resolution: str, quality: int) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=T.OUTPUT_TYPE_MP4,
        video=[
            job_pb2.VideoVariant(codec=V.VIDEO_CODEC_H264, resolution=resolution, quality=quality)
        ],
    )


SYSTEM_PRESETS: dict[str, job_pb2.OutputSpec] = {
    "h264_1080p_standard": _mp4("1080p", Q.QUALITY_STANDARD),
    "h264_720p_standard": _mp4("720p", Q.QUALITY_STANDARD),
    "h264_480p_economy": _mp4("480p", Q.QUALITY_ECONOMY),
}


def resolve(spec: job_pb2.OutputSpec) -> job_pb2.OutputSpec:
    """The inline spec a (validated) output refers to."""
    if not spec.preset:
        return spec
    resolved = job_pb2.OutputSpec()
    resolved.CopyFrom(SYSTEM_PRESETS[spec.preset])
    return resolved
