"""Cost: one pricing table (pricing_table.py), applied after probing (estimate) and after
encoding (actual).

A video variant costs minutes x rate(codec, height tier) x fps/30 x quality x priority. Each
variant is computed exactly (Decimal) and rounded once, half to even, to integer micros; an
output's cost is the sum of its variants' micros. So the per-variant figures of an adaptive
output add up to the output's figure exactly, with no remainder to hand to anyone, and the
job's cost is the sum of its outputs'.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from kiln.v1 import job_pb2

from common.output_types import ADAPTIVE, IMAGES, PROGRESSIVE

from .pricing_table import PricingTable, default_pricing_table

SECONDS_PER_MINUTE = Decimal(60)
REFERENCE_FPS = Decimal(30)


@dataclass(frozen=True)
class VariantPrice:
    """One video variant's share of an output's cost."""

    index: int
    # The rendition's name in the package (v0, v1, ... as the worker numbers encoded
    # variants); empty when the variant is not encoded.
    name: str
    priced_height: int
    fps: float
    rate_micros_per_minute: int
    # Above the source and duplicating a variant that has the source's size: the worker
    # drops it, so it costs nothing.
    dropped: bool
    micros: int


def variant_prices(
    spec: job_pb2.OutputSpec,
    *,
    seconds: float,
    source_height: int,
    source_fps: float,
    priority: int,
    table: PricingTable | None = None,
) -> list[VariantPrice]:
    """Each video variant of `spec` priced for `seconds`; empty for audio and image outputs.

    `source_height` is the source's displayed height (after rotation). A variant above it is
    priced as the worker encodes it: never upscaled unless asked, so the first such variant
    costs what a source-sized one does, and it is dropped (free) when another variant already
    has the source's height.
    """
    table = table or default_pricing_table()
    if spec.HasField("custom") and spec.type in PROGRESSIVE:
        # Priced as what it most often is: one H.264 rendition at the source's size.
        spec = job_pb2.OutputSpec(video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)])
    heights = [variant_height(v.resolution, source_height) for v in spec.video]
    above = [
        source_height > 0 and not v.allow_upscale and height > source_height
        for v, height in zip(spec.video, heights, strict=True)
    ]
    source_covered = any(
        height == source_height and not is_above
        for height, is_above in zip(heights, above, strict=True)
    )
    priority_factor = table.priority_factor(priority)
    prices = []
    encoded = 0
    for index, variant in enumerate(spec.video):
        height = heights[index]
        if above[index]:
            if source_covered:
                prices.append(VariantPrice(index, "", source_height, 0.0, 0, True, 0))
                continue
            source_covered = True
            height = source_height
        fps = variant.fps or source_fps or 30.0
        rate = table.video_rate(variant.codec, height)
        exact = (
            Decimal(rate)
            * _decimal(max(seconds, 0.0))
            / SECONDS_PER_MINUTE
            * _decimal(fps)
            / REFERENCE_FPS
            * table.quality_factor(variant.quality)
            * priority_factor
        )
        prices.append(
            VariantPrice(index, f"v{encoded}", height, fps, rate, False, _round_micros(exact))
        )
        encoded += 1
    return prices


def output_cost(
    spec: job_pb2.OutputSpec,
    *,
    seconds: float,
    source_height: int,
    source_fps: float,
    priority: int,
    table: PricingTable | None = None,
) -> int:
    """Micros for `seconds` of this output: the sum of its variants for video outputs."""
    table = table or default_pricing_table()
    variants = variant_prices(
        spec,
        seconds=seconds,
        source_height=source_height,
        source_fps=source_fps,
        priority=priority,
        table=table,
    )
    if variants:
        return sum(v.micros for v in variants)
    priority_factor = table.priority_factor(priority)
    if spec.type in IMAGES:
        return _round_micros(Decimal(table.image_micros_per_output) * priority_factor)
    return _round_micros(
        Decimal(table.audio_only_micros_per_minute)
        * _decimal(max(seconds, 0.0))
        / SECONDS_PER_MINUTE
        * priority_factor
    )


def priced_output(
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    seconds: float,
    priority: int,
    table: PricingTable,
) -> tuple[int, list[VariantPrice]]:
    """An output's micros for `seconds` of the probed input and, for video outputs, each
    variant's share: the job's estimate after probing, its actual cost after encoding."""
    video = next((s for s in info.streams if s.kind == "video"), None)
    height = source_display_height(video)
    fps = video.frame_rate if video else 30.0
    cost = output_cost(
        spec,
        seconds=seconds,
        source_height=height,
        source_fps=fps,
        priority=priority,
        table=table,
    )
    variants = variant_prices(
        spec,
        seconds=seconds,
        source_height=height,
        source_fps=fps,
        priority=priority,
        table=table,
    )
    return cost, variants


def shows_variants(spec: job_pb2.OutputSpec) -> bool:
    """Whether an output carries a per-variant breakdown: adaptive ladders do (Transcodely's
    variant_pricing[])."""
    return spec.type in ADAPTIVE and bool(spec.video) and not spec.HasField("custom")


def source_display_height(video: job_pb2.StreamInfo | None) -> int:
    """The source's height as shown: a 90/270 rotation swaps width and height on decode."""
    if video is None:
        return 0
    return video.width if video.rotation in (90, 270) else video.height


def variant_height(resolution: str, source_height: int) -> int:
    resolution = resolution.strip().lower()
    if resolution.endswith("p") and resolution[:-1].isdigit():
        return int(resolution[:-1])
    if "x" in resolution:
        return int(resolution.split("x", 1)[1])
    return source_height


def _decimal(value: float) -> Decimal:
    # Through repr: 2.002 s is the decimal 2.002 a person checking by hand would use.
    return Decimal(repr(float(value)))


def _round_micros(exact: Decimal) -> int:
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
