"""Stream choice and picture geometry: which stream to encode and at what even size.

Owns default_stream (the stream a player would pick), display_size (rotation applied), the
resolution strings of a variant ("720p", "WxH") turned into even output sizes that keep the
source aspect and never upscale unless allowed (output_dimensions, exceeds_source), and the
scaling of images to a width (scaled_to_width). Adjustments are recorded as notes.
"""

from __future__ import annotations

import math
import re

from kiln.v1 import job_pb2

from worker.media.errors import INPUT_NO_VIDEO, MediaError, OutputSpecError


def default_stream(info: job_pb2.InputInfo, kind: str) -> job_pb2.StreamInfo | None:
    """The stream a player would pick: the first of `kind` marked default, else the first."""
    candidates = [stream for stream in info.streams if stream.kind == kind]
    return next((stream for stream in candidates if stream.is_default), None) or next(
        iter(candidates), None
    )


def display_size(video: job_pb2.StreamInfo) -> tuple[int, int]:
    """Width and height as shown: ffmpeg rotates on decode, so a 90/270 rotation swaps them."""
    if video.rotation in (90, 270):
        return video.height, video.width
    return video.width, video.height


def scaled_to_width(video: job_pb2.StreamInfo, width: int) -> tuple[int, int]:
    """Even (width, height) of an image `width` wide (the source's when 0), aspect kept."""
    display_width, display_height = _checked_display_size(video)
    width = width or display_width
    return nearest_even(width), nearest_even(width * display_height / display_width)


_HEIGHT_RESOLUTION = re.compile(r"^(\d+)p$")
_EXPLICIT_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")


def output_dimensions(
    variant: job_pb2.VideoVariant,
    video: job_pb2.StreamInfo,
    *,
    index: int,
    notes: list[str],
) -> tuple[int, int]:
    """Even width and height for a variant, keeping the source's displayed aspect ratio.

    "720p" fixes the height; "WxH" is a box the picture is fitted into (a different aspect would
    otherwise stretch it). Unless allow_upscale, nothing grows beyond the source; every change
    to what was asked is recorded in `notes` with the variant's index.
    """
    source_width, source_height = _checked_display_size(video)
    box = _requested_box(variant)
    if box is None:
        return even_floor(source_width), even_floor(source_height)
    box_width, box_height = box

    scale = min(box_width / source_width, box_height / source_height)
    if scale > 1 and not variant.allow_upscale:
        notes.append(
            f"variant {index}: {variant.resolution} capped to source {source_width}x{source_height}"
        )
        return even_floor(source_width), even_floor(source_height)

    width, height = nearest_even(source_width * scale), nearest_even(source_height * scale)
    if box_width != math.inf and (width, height) != (
        nearest_even(box_width),
        nearest_even(box_height),
    ):
        notes.append(
            f"variant {index}: {variant.resolution} fitted to {width}x{height} "
            "to keep the source aspect ratio"
        )
    return width, height


def exceeds_source(variant: job_pb2.VideoVariant, video: job_pb2.StreamInfo) -> bool:
    """Whether output_dimensions would cap this variant to the source size."""
    source_width, source_height = _checked_display_size(video)
    box = _requested_box(variant)
    if box is None or variant.allow_upscale:
        return False
    box_width, box_height = box
    return min(box_width / source_width, box_height / source_height) > 1


def _checked_display_size(video: job_pb2.StreamInfo) -> tuple[int, int]:
    source_width, source_height = display_size(video)
    if source_width <= 0 or source_height <= 0:
        raise MediaError(INPUT_NO_VIDEO, "the input's video stream has no dimensions")
    return source_width, source_height


def _requested_box(variant: job_pb2.VideoVariant) -> tuple[float, float] | None:
    """The (width, height) box a resolution string asks for; width is infinite for "NNNp"."""
    requested = variant.resolution.strip().lower()
    if not requested:
        return None
    if match := _HEIGHT_RESOLUTION.match(requested):
        box_width, box_height = math.inf, float(match.group(1))
    elif match := _EXPLICIT_RESOLUTION.match(requested):
        box_width, box_height = float(match.group(1)), float(match.group(2))
    else:
        raise OutputSpecError(f"resolution {variant.resolution!r} is not 'NNNp' or 'WxH'")
    if box_height <= 0 or box_width <= 0:
        raise OutputSpecError(f"resolution {variant.resolution!r} is empty")
    return box_width, box_height


def nearest_even(value: float) -> int:
    # The nearest even number (as 4:2:0 chroma needs), halves rounded up rather than to even so
    # that 405 → 406 like 403 → 404, and never below 2.
    return max(2, math.floor(value / 2 + 0.5) * 2)


def even_floor(value: int) -> int:
    # For the source size itself: rounding up would be an upscale by one pixel.
    return max(2, value - value % 2)
