"""Validation of an output's overlays (images and text drawn over its video).

What the server can check without reading anything: how many, which kind, the ranges of
every figure, and the text. The image itself (a PNG of at most 4096x4096 pixels and 10 MB)
is only seen by the worker, which fails the output with OVERLAY_INVALID when it is not.
The image URL is checked against the input policy by validation.validate_create, where the
policy is at hand.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable

from kiln.v1 import job_pb2

from common.output_types import VIDEO

MAX_OVERLAYS = 8
MAX_TEXT_CHARACTERS = 100
# Fractions of the frame: an overlay narrower than 1 % of the frame is a few pixels on a
# 240p rung, and a margin past half the frame would push it off the other side.
MIN_WIDTH_FRACTION, MAX_WIDTH_FRACTION = 0.01, 1.0
MIN_HEIGHT_FRACTION, MAX_HEIGHT_FRACTION = 0.01, 0.5
MAX_MARGIN = 0.5
# A time window longer than a day is a typo; the largest clip is far shorter.
MAX_SECONDS = 86_400.0

Bad = Callable[[str, str], None]
POSITIONS = frozenset(job_pb2.OverlayPosition.values())


def check_overlays(path: str, output: job_pb2.OutputSpec, bad: Bad) -> None:
    """Report every problem of output.overlays under `path` (the output's own path)."""
    if not output.overlays:
        return
    if output.HasField("custom") or output.type not in VIDEO:
        what = "custom commands" if output.HasField("custom") else "this output type"
        bad(
            f"{path}.overlays",
            f"overlays are drawn on MP4, WEBM, MOV, MKV, HLS, DASH and CMAF video, not {what}",
        )
        return
    if len(output.overlays) > MAX_OVERLAYS:
        bad(f"{path}.overlays", f"at most {MAX_OVERLAYS} overlays, got {len(output.overlays)}")
        return
    for index, overlay in enumerate(output.overlays):
        _check_overlay(f"{path}.overlays[{index}]", overlay, bad)


def _check_overlay(path: str, overlay: job_pb2.Overlay, bad: Bad) -> None:
    has_image, has_text = overlay.HasField("image"), overlay.HasField("text")
    if has_image == has_text:
        bad(path, "set exactly one of image and text")
    elif has_image:
        _check_image(f"{path}.image", overlay.image, bad)
    else:
        _check_text(f"{path}.text", overlay.text, bad)

    if overlay.position not in POSITIONS:
        bad(f"{path}.position", f"unknown position {overlay.position}")
    if overlay.HasField("x") != overlay.HasField("y"):
        bad(path, "set both x and y, or neither")
    elif overlay.HasField("x"):
        if overlay.position:
            bad(f"{path}.position", "set either position or x and y, not both")
        for name in ("x", "y"):
            if not _within(getattr(overlay, name), 0.0, 1.0):
                bad(f"{path}.{name}", "must be a fraction of the frame between 0 and 1")
    if overlay.HasField("margin") and not _within(overlay.margin, 0.0, MAX_MARGIN):
        bad(f"{path}.margin", f"must be a fraction of the frame width between 0 and {MAX_MARGIN:g}")
    if overlay.HasField("opacity") and not _within(overlay.opacity, 0.0, 1.0):
        bad(f"{path}.opacity", "must be between 0 (invisible) and 1 (opaque)")
    if not _within(overlay.start_seconds, 0.0, MAX_SECONDS):
        bad(f"{path}.start_seconds", f"must be between 0 and {MAX_SECONDS:g}")
    if overlay.HasField("end_seconds"):
        if not _within(overlay.end_seconds, 0.0, MAX_SECONDS):
            bad(f"{path}.end_seconds", f"must be between 0 and {MAX_SECONDS:g}")
        elif overlay.end_seconds <= overlay.start_seconds:
            bad(f"{path}.end_seconds", "must be after start_seconds")


def _check_image(path: str, image: job_pb2.OverlayImage, bad: Bad) -> None:
    if not image.url:
        bad(f"{path}.url", "is required")
    if image.width_fraction and not _within(
        image.width_fraction, MIN_WIDTH_FRACTION, MAX_WIDTH_FRACTION
    ):
        bad(
            f"{path}.width_fraction",
            f"must be between {MIN_WIDTH_FRACTION:g} and {MAX_WIDTH_FRACTION:g} of the frame width",
        )


def _check_text(path: str, text: job_pb2.OverlayText, bad: Bad) -> None:
    if text.timecode and text.text:
        bad(f"{path}.text", "set either text or timecode, not both")
    elif not text.timecode and not text.text:
        bad(f"{path}.text", "is required unless timecode is set")
    if len(text.text) > MAX_TEXT_CHARACTERS:
        bad(f"{path}.text", f"at most {MAX_TEXT_CHARACTERS} characters")
    elif any(unicodedata.category(c).startswith("C") for c in text.text):
        # Newlines included: one line of text, so where it sits is what the request says.
        bad(f"{path}.text", "must be one line without control characters (no newlines)")
    if text.height_fraction and not _within(
        text.height_fraction, MIN_HEIGHT_FRACTION, MAX_HEIGHT_FRACTION
    ):
        bad(
            f"{path}.height_fraction",
            f"must be between {MIN_HEIGHT_FRACTION:g} and {MAX_HEIGHT_FRACTION:g} "
            "of the frame height",
        )


def _within(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high
