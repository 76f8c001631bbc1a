"""Cost: one pricing table, applied after probing (estimate) and after encoding (actual).

cost = minutes x rate(codec, resolution tier) x fps/30 x quality x priority, in
integer micros so sums never drift.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

V = job_pb2.VideoCodec
Q = job_pb2.Quality
P = job_pb2.Priority

# Micros per minute of output for one variant, by codec and resolution tier (height).
VIDEO_RATE_PER_MINUTE: dict[int, list[tuple[int, int]]] = {
    V.VIDEO_CODEC_H264: [(480, 4_000), (720, 6_000), (1080, 9_000), (2160, 18_000)],
    V.VIDEO_CODEC_H265: [(480, 8_000), (720, 12_000), (1080, 18_000), (2160, 36_000)],
    V.VIDEO_CODEC_VP9: [(480, 8_000), (720, 12_000), (1080, 18_000), (2160, 36_000)],
    V.VIDEO_CODEC_AV1: [(480, 16_000), (720, 24_000), (1080, 36_000), (2160, 72_000)],
}
AUDIO_ONLY_RATE_PER_MINUTE = 1_000
IMAGE_RATE = 500
QUALITY_FACTOR: dict[int, float] = {
    Q.QUALITY_ECONOMY: 0.8,
    Q.QUALITY_STANDARD: 1.0,
    Q.QUALITY_PREMIUM: 1.5,
}
PRIORITY_FACTOR: dict[int, float] = {
    P.PRIORITY_ECONOMY: 0.75,
    P.PRIORITY_STANDARD: 1.0,
    P.PRIORITY_PREMIUM: 2.0,
}


def _tier_rate(codec: int, height: int) -> int:
    table = VIDEO_RATE_PER_MINUTE.get(codec, VIDEO_RATE_PER_MINUTE[V.VIDEO_CODEC_H264])
    for max_height, rate in table:
        if height <= max_height:
            return rate
    return table[-1][1]


CUSTOM_VIDEO_TYPES = frozenset(
    {
        job_pb2.OUTPUT_TYPE_MP4,
        job_pb2.OUTPUT_TYPE_MOV,
        job_pb2.OUTPUT_TYPE_MKV,
        job_pb2.OUTPUT_TYPE_WEBM,
    }
)


def output_cost(
    spec: job_pb2.OutputSpec,
    *,
    seconds: float,
    source_height: int,
    source_fps: float,
    priority: int,
) -> int:
    """Micros for `seconds` of this output."""
    minutes = max(seconds, 0.0) / 60.0
    priority_factor = PRIORITY_FACTOR.get(priority, 1.0)
    if spec.HasField("custom") and spec.type in CUSTOM_VIDEO_TYPES:
        # Priced as what it most often is: one H.264 rendition at the source's size.
        spec = job_pb2.OutputSpec(video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)])
    if not spec.video:
        if spec.type in (
            job_pb2.OUTPUT_TYPE_JPG,
            job_pb2.OUTPUT_TYPE_PNG,
            job_pb2.OUTPUT_TYPE_WEBP,
            job_pb2.OUTPUT_TYPE_GIF,
        ):
            return round(IMAGE_RATE * priority_factor)
        return round(minutes * AUDIO_ONLY_RATE_PER_MINUTE * priority_factor)
    total = 0.0
    for variant in spec.video:
        height = variant_height(variant.resolution, source_height)
        fps = variant.fps or source_fps or 30.0
        total += (
            minutes
            * _tier_rate(variant.codec, height)
            * (fps / 30.0)
            * QUALITY_FACTOR.get(variant.quality, 1.0)
        )
    return round(total * priority_factor)


def variant_height(resolution: str, source_height: int) -> int:
    if resolution.endswith("p") and resolution[:-1].isdigit():
        return int(resolution[:-1])
    if "x" in resolution:
        return int(resolution.split("x", 1)[1])
    return source_height
